import { Command, Option } from 'commander';
import { FLEX_DRIVERS, VENDOR } from '../../flexvolume/capabilities.js';
import { DEFAULT_PLUGIN_DIR, installFlexvolume } from '../../flexvolume/install.js';
import { type Config, loadConfig } from '../config.js';
import { isStowageError } from '../core/errors.js';
import { registerHost } from '../core/hosts.js';
import { formatSize } from '../core/size.js';
import { openRuntime } from '../runtime.js';
import { migrateStore } from '../state/migrate.js';
import { openStoreAt } from '../state/open.js';
import { totalRefs } from '../state/store.js';
import { runDaemon } from './daemon.js';
import { runDoctor } from './doctor.js';
import { renderTable } from './table.js';

interface GlobalFlags {
  config?: string;
  dataDir?: string;
  state?: string;
  mountRoot?: string;
  socketDir?: string;
  socketPrefix?: string;
  drivers?: string;
  hostId?: string;
  logLevel?: string;
  logFile?: string;
}

function configFrom(cmd: Command): Config {
  const f = cmd.optsWithGlobals<GlobalFlags>();
  return loadConfig({
    ...(f.config ? { file: f.config } : {}),
    flags: {
      dataDir: f.dataDir,
      state: f.state,
      mountRoot: f.mountRoot,
      socketDir: f.socketDir,
      socketPrefix: f.socketPrefix,
      drivers: f.drivers
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      hostId: f.hostId,
      log: { level: f.logLevel, file: f.logFile },
    },
  });
}

/** CLI commands print warnings only; the daemon logs at the configured level. */
function quiet(config: Config): Config {
  return { ...config, log: { ...config.log, level: 'warn' } };
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

export function buildCli(): Command {
  const program = new Command('stowage')
    .description('Storage orchestrator: Docker volume plugins and Kubernetes flexvolume over one state store')
    .option(
      '-c, --config <file>',
      'config file (YAML or JSON); default $STOWAGE_CONFIG or /etc/stowage/config.yaml',
    )
    .option('--data-dir <dir>', 'base directory for state, images and mounts (default /var/lib/stowage)')
    .option('--state <file>', 'SQLite state database (default <data-dir>/state.db)')
    .option('--mount-root <dir>', 'where volumes are mounted (default <data-dir>/volumes)')
    .option('--socket-dir <dir>', 'Docker plugin socket directory (default /run/docker/plugins)')
    .option('--socket-prefix <prefix>', 'socket/plugin name prefix (default stowage-)')
    .option('--drivers <list>', 'comma-separated drivers to enable (default local)')
    .option('--host-id <id>', "this host's id in the store (default the hostname)")
    .addOption(
      new Option('--log-level <level>').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal']),
    )
    .option('--log-file <file>', 'log to this file instead of stderr')
    .showHelpAfterError()
    // Global flags go before the command, so a command may have its own flag of the same name
    // (`flexvolume install --drivers` is not the daemon's `--drivers`).
    .enablePositionalOptions();

  program
    .command('daemon')
    .description('serve the Docker volume plugin sockets of the enabled drivers')
    .action(async (_opts, cmd: Command) => {
      await runDaemon(await openRuntime(configFrom(cmd)));
    });

  const volumes = program.command('volumes').description('look at volumes in the state store');
  volumes
    .command('ls')
    .description('list volumes: name, driver, size, state, host, mounts')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const rt = await openRuntime(quiet(configFrom(cmd)));
      try {
        const rows = [];
        for (const v of await rt.store.listVolumes()) {
          const mounts = await rt.store.getMounts(v.name);
          const attachments = await rt.store.getAttachments(v.name);
          const size = typeof v.fields.sizeBytes === 'number' ? formatSize(v.fields.sizeBytes) : '';
          rows.push({
            name: v.name,
            driver: v.driver,
            size,
            state: mounts.length > 0 ? 'mounted' : attachments.length > 0 ? 'attached' : v.status,
            hosts: [...new Set([...mounts.map((m) => m.host), ...attachments.map((a) => a.host)])],
            mounts: mounts.reduce((n, m) => n + totalRefs(m), 0),
          });
        }
        if (opts.json) print(JSON.stringify(rows, null, 2));
        else {
          print(
            renderTable(
              ['NAME', 'DRIVER', 'SIZE', 'STATE', 'HOST', 'MOUNTS'],
              rows.map((r) => [
                r.name,
                r.driver,
                r.size,
                r.state,
                r.hosts.join(',') || '-',
                String(r.mounts),
              ]),
            ),
          );
        }
      } finally {
        await rt.close();
      }
    });
  volumes
    .command('inspect')
    .description('print everything stowage knows about a volume, as JSON')
    .argument('<name>')
    .action(async (name: string, _opts, cmd: Command) => {
      const rt = await openRuntime(quiet(configFrom(cmd)));
      try {
        const view = await rt.manager.inspect(name);
        print(
          JSON.stringify(
            { ...view.volume, mountpoint: view.mountpoint ?? null, status: view.status },
            null,
            2,
          ),
        );
      } finally {
        await rt.close();
      }
    });

  volumes
    .command('rm')
    .description('remove a volume (refused while any host uses it; its remove policy decides the data)')
    .argument('<name>')
    .action(async (name: string, _opts, cmd: Command) => {
      const rt = await openRuntime(quiet(configFrom(cmd)));
      try {
        await rt.manager.remove(undefined, name);
        print(name);
      } finally {
        await rt.close();
      }
    });

  const hosts = program.command('hosts').description('the hosts that share the state store');
  hosts
    .command('ls')
    .description('list hosts: id, last seen, attachments and mounts')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const rt = await openRuntime(quiet(configFrom(cmd)));
      try {
        const rows = [];
        const live = rt.store.liveHosts ? await rt.store.liveHosts() : undefined;
        for (const h of await rt.store.listHosts()) {
          const attachments = await rt.store.listAttachmentsByHost(h.id);
          const mounts = await rt.store.listMountsByHost(h.id);
          rows.push({
            id: h.id,
            // With a shared store a daemon's host is live while it renews its lease, then gone.
            status:
              live === undefined || h.identity.leaseTtlSeconds === undefined
                ? 'no lease'
                : live.has(h.id)
                  ? 'live'
                  : 'gone',
            lastSeen: h.lastSeen,
            identity: h.identity,
            attachments: attachments.map((a) => `${a.volume}:${a.device || '?'}`),
            mounts: mounts.map((m) => `${m.volume}(${totalRefs(m)})`),
          });
        }
        if (opts.json) print(JSON.stringify(rows, null, 2));
        else
          print(
            renderTable(
              ['HOST', 'STATUS', 'REGISTERED', 'ATTACHED', 'MOUNTED (USERS)'],
              rows.map((r) => [
                r.id,
                r.status,
                r.lastSeen,
                r.attachments.join(',') || '-',
                r.mounts.join(',') || '-',
              ]),
            ),
          );
      } finally {
        await rt.close();
      }
    });
  hosts
    .command('register')
    .description('record this host and its identity (e.g. EC2 instance) so other hosts can attach to it')
    .action(async (_opts, cmd: Command) => {
      const rt = await openRuntime(quiet(configFrom(cmd)));
      try {
        const h = await registerHost(rt.store, rt.config.hostId, rt.manager.drivers(), rt.log);
        print(JSON.stringify(h));
      } finally {
        await rt.close();
      }
    });

  const state = program.command('state').description('the metadata store itself');
  state
    .command('migrate')
    .description('copy every volume, attachment, mount and host to another store, verified (daemons stopped)')
    .requiredOption('--from <store>', 'sqlite:/path (or a path) or etcd://host:port/prefix')
    .requiredOption(
      '--to <store>',
      'sqlite:/path (or a path) or etcd://host:port/prefix (etcd settings from the config)',
    )
    .action(async (opts: { from: string; to: string }, cmd: Command) => {
      const config = quiet(configFrom(cmd));
      const from = await openStoreAt(opts.from, config.etcd);
      try {
        const to = await openStoreAt(opts.to, config.etcd);
        try {
          const r = await migrateStore(from, to);
          print(
            `migrated ${r.volumes} volumes, ${r.attachments} attachments, ${r.mounts} mounts and ${r.hosts} hosts from ${opts.from} to ${opts.to}; verified`,
          );
        } finally {
          await to.close();
        }
      } finally {
        await from.close();
      }
    });

  const flex = program.command('flexvolume').description('the Kubernetes flexvolume drivers');
  flex
    .command('install')
    .description("install stowage~<driver>/<driver> into kubelet's volume plugin directory, atomically")
    .option('--dir <dir>', "kubelet's --volume-plugin-dir", DEFAULT_PLUGIN_DIR)
    .option('--drivers <list>', 'comma-separated drivers', Object.keys(FLEX_DRIVERS).join(','))
    .option('--node <path>', 'node binary on the machines that run the driver', process.execPath)
    .option('--copy-node', 'copy this node into <dir>/.stowage-node/ and use it (nothing needed on the host)')
    .action(async (opts: { dir: string; drivers: string; node: string; copyNode?: boolean }) => {
      const drivers = opts.drivers
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const d of await installFlexvolume({
        dir: opts.dir,
        drivers,
        node: opts.node,
        copyNode: opts.copyNode === true,
      })) {
        print(`${VENDOR}/${d.driver}: ${d.executable}`);
      }
    });

  program
    .command('doctor')
    .description('check this host: root, mount tools, socket dir, dockerd, state store, drivers')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const checks = await runDoctor(quiet(configFrom(cmd)));
      if (opts.json) print(JSON.stringify(checks, null, 2));
      else
        print(
          renderTable(
            ['CHECK', 'OK', 'DETAIL'],
            checks.map((c) => [c.name, c.ok ? 'yes' : 'NO', c.detail]),
          ),
        );
      if (checks.some((c) => !c.ok)) process.exitCode = 1;
    });
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    const msg = isStowageError(err) ? err.message : err instanceof Error ? err.message : String(err);
    process.stderr.write(`stowage: ${msg}\n`);
    process.exitCode = isStowageError(err, 'NOT_FOUND') ? 2 : 1;
  }
}
