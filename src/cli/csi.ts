import { type Command, Option } from 'commander';
import { TOPOLOGY_HOST, TOPOLOGY_ZONE } from '../../csi/context.js';
import { socketPathOf } from '../../csi/endpoint.js';
import { csiServices } from '../../csi/plugin.js';
import { CSI_MODES, type CsiMode, type CsiServer, serveCsi } from '../../csi/server.js';
import { type DriverName, driverTraits } from '../../drivers/catalog.js';
import { StowageError } from '../base/errors.js';
import type { Config } from '../config.js';
import { openRuntime, type Runtime } from '../runtime.js';
import { configFrom } from './context.js';
import { START_BUDGET_MS, StartupTasks } from './daemon.js';
import { packageVersion } from './version.js';

export interface CsiOptions {
  driver: string;
  endpoint: string;
  mode: CsiMode;
  kubeletDir: string;
}

export interface RunningCsi {
  server: CsiServer;
  startup?: StartupTasks;
  stop(): Promise<void>;
}

/**
 * `stowage csi`: one driver's CSI plugin on a unix socket, the controller role, the node role or
 * both. It opens the same store, with the same VolumeManager, as the Docker daemon and the
 * flexvolume executable, so the three doors share locks, mount counts and attachments.
 */
export function addCsiCommand(program: Command): void {
  program
    .command('csi')
    .description("serve one driver's CSI plugin (Identity, Controller and/or Node) on a unix socket")
    .requiredOption('--driver <name>', 'the driver this plugin serves: local, nfs, efs or ebs')
    .option(
      '--endpoint <endpoint>',
      'the socket to serve: unix:///path (default $CSI_ENDPOINT, else unix:///csi/csi.sock)',
    )
    .addOption(new Option('--mode <mode>', 'which services to serve').choices(CSI_MODES).default('all'))
    .option(
      '--kubelet-dir <dir>',
      "kubelet's directory: staging and target paths must be inside it",
      '/var/lib/kubelet',
    )
    .action(
      async (
        opts: { driver: string; endpoint?: string; mode: CsiMode; kubeletDir: string },
        cmd: Command,
      ) => {
        const endpoint = opts.endpoint ?? process.env.CSI_ENDPOINT ?? 'unix:///csi/csi.sock';
        const config = csiConfig(configFrom(cmd), opts.driver);
        await runCsi(await openRuntime(config), { ...opts, endpoint });
      },
    );
}

/** The config with only this driver enabled (it need not be in the daemon's list) and no metrics port. */
export function csiConfig(config: Config, driver: string): Config {
  if (!driverTraits(driver)) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `unknown driver ${JSON.stringify(driver)}: choose local, nfs, efs or ebs`,
    );
  }
  // The daemon of this host may serve metrics.listen from the same config: a second listener on
  // that address would stop one of them from starting.
  return { ...config, drivers: [driver], metrics: { ...config.metrics, listen: undefined } };
}

/** Serves until SIGTERM/SIGINT; mounts are kept when it stops (pods keep running). */
export async function runCsi(rt: Runtime, opts: CsiOptions): Promise<void> {
  let signalled: string | undefined;
  let wake: (() => void) | undefined;
  const onSignal = (signal: string) => {
    signalled ??= signal;
    wake?.();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  const csi = await startCsi(rt, opts);
  if (signalled === undefined) await new Promise<void>((resolve) => (wake = resolve));
  rt.log.info({ signal: signalled }, 'CSI plugin shutting down; mounts are kept');
  await csi.stop();
  rt.log.flush();
}

/**
 * Starts serving. The node role first registers this host and reconciles, like the daemon: with
 * a start budget, after which it serves anyway (Probe answers ready=false until that is done).
 */
export async function startCsi(rt: Runtime, opts: CsiOptions): Promise<RunningCsi> {
  socketPathOf(opts.endpoint); // a wrong endpoint fails before anything else starts
  const traits = driverTraits(opts.driver);
  if (!traits) throw new StowageError('INVALID_ARGUMENT', `unknown driver ${JSON.stringify(opts.driver)}`);
  const driver = rt.registry.get(opts.driver as DriverName);
  const startup = opts.mode === 'controller' ? undefined : new StartupTasks(rt);
  try {
    await startup?.firstTry(START_BUDGET_MS);
    const services = csiServices(
      {
        driver: opts.driver,
        traits,
        manager: rt.manager,
        hosts: rt.hosts,
        nodeId: rt.config.hostId,
        version: packageVersion(),
        kubeletDir: opts.kubeletDir,
        log: rt.log.child({ door: 'csi', driver: opts.driver }),
        ready: () => startup?.isDone() ?? true,
        checkStore: async () => {
          await rt.store.listHosts();
        },
        nodeTopology: async (): Promise<Record<string, string> | undefined> => {
          if (traits.hostLocal) return { [TOPOLOGY_HOST]: rt.config.hostId };
          if (!traits.zonal) return undefined;
          const zone = (await driver.hostIdentity?.())?.availabilityZone;
          if (typeof zone !== 'string' || zone === '') {
            throw new StowageError(
              'UNAVAILABLE',
              "this host's availability zone is unknown (instance metadata unreachable?)",
            );
          }
          return { [TOPOLOGY_ZONE]: zone };
        },
      },
      opts.mode,
      // Counted in the store like flexvolume's calls: the daemon of this host shows them.
      (method, code, seconds) =>
        void rt.requests.record({ door: 'csi', driver: opts.driver, operation: method, code, seconds }),
    );
    const server = await serveCsi(opts.endpoint, services, rt.log);
    rt.log.info({ driver: opts.driver, mode: opts.mode, endpoint: server.path }, 'stowage CSI plugin ready');
    return {
      server,
      ...(startup ? { startup } : {}),
      stop: async () => {
        await server.close();
        await startup?.stop(20_000);
        await rt.close();
      },
    };
  } catch (err) {
    await startup?.stop(20_000);
    await rt.close();
    throw err;
  }
}
