import type { Command } from 'commander';
import { migrateStore } from '../state/migrate.js';
import { openStoreAt } from '../state/open.js';
import { totalRefs } from '../state/store.js';
import { configFrom, print, quiet, withRuntime } from './context.js';
import { renderTable } from './table.js';

/** `stowage hosts …` and `stowage state …`: the hosts sharing the store, and the store itself. */
export function addClusterCommands(program: Command): void {
  const hosts = program.command('hosts').description('the hosts that share the state store');
  hosts
    .command('ls')
    .description('list hosts: id, last seen, attachments and mounts')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withRuntime(cmd, async (rt) => {
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
      });
    });
  hosts
    .command('register')
    .description('record this host and its identity (e.g. EC2 instance) so other hosts can attach to it')
    .action(async (_opts, cmd: Command) => {
      await withRuntime(cmd, async (rt) => {
        const h = await rt.hosts.register();
        print(JSON.stringify(h));
      });
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
}
