import { Command, Option } from 'commander';
import { isStowageError } from '../base/errors.js';
import { formatSize } from '../base/size.js';
import { totalRefs } from '../state/store.js';
import { addClusterCommands } from './cluster.js';
import { addConfigCommand } from './config-cmd.js';
import { configFrom, print, quiet, withCachedRuntime, withRuntime } from './context.js';
import { addCsiCommand } from './csi.js';
import { openDaemonRuntime, runDaemon } from './daemon.js';
import { runDoctor } from './doctor.js';
import { addFlexvolumeCommands } from './flexvolume.js';
import { addReadyCommand } from './ready.js';
import { addSnapshotCommands } from './snapshots.js';
import { renderTable } from './table.js';
import { versionLine } from './version.js';

export function buildCli(): Command {
  const program = new Command('stowage')
    .description('Storage orchestrator: Docker volume plugins and Kubernetes flexvolume over one state store')
    .version(versionLine(), '-V, --version', "print the version (and node's) and exit")
    .option(
      '-c, --config <file>',
      'config file (YAML or JSON); default $STOWAGE_CONFIG or /etc/stowage/config.yaml',
    )
    .option('--data-dir <dir>', 'base directory for state, images and mounts (default /var/lib/stowage)')
    .option(
      '--state <store>',
      'state store: a SQLite file (default <data-dir>/state.db) or etcd://host:port/prefix',
    )
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
      await runDaemon(await openDaemonRuntime(configFrom(cmd)));
    });

  const volumes = program.command('volumes').description('look at volumes in the state store');
  volumes
    .command('ls')
    .description('list volumes: name, driver, size, state, host, mounts')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withCachedRuntime(cmd, async (rt) => {
        const rows = [];
        for (const v of await rt.store.listVolumes()) {
          const { mounts, attachments } = await rt.store.getVolumeState(v.name);
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
      });
    });
  volumes
    .command('inspect')
    .description('print everything stowage knows about a volume, as JSON')
    .argument('<name>')
    .action(async (name: string, _opts, cmd: Command) => {
      await withRuntime(cmd, async (rt) => {
        const view = await rt.manager.inspect(name);
        print(
          JSON.stringify(
            { ...view.volume, mountpoint: view.mountpoint ?? null, status: view.status },
            null,
            2,
          ),
        );
      });
    });

  volumes
    .command('rm')
    .description('remove a volume (refused while any host uses it; its remove policy decides the data)')
    .argument('<name>')
    .action(async (name: string, _opts, cmd: Command) => {
      await withRuntime(cmd, async (rt) => {
        await rt.manager.remove(undefined, name);
        print(name);
      });
    });

  addClusterCommands(program);
  addFlexvolumeCommands(program);
  addCsiCommand(program);
  addSnapshotCommands(program);
  addConfigCommand(program);
  addReadyCommand(program);

  program
    .command('doctor')
    .description('check this host: root, mount tools, socket dir, dockerd, state store, drivers, metrics')
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
