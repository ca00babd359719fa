import type { Command } from 'commander';
import { formatSize } from '../base/size.js';
import type { VolumeSnapshot } from '../core/driver.js';
import { print, withRuntime } from './context.js';
import { renderTable } from './table.js';

/** The one driver that takes snapshots today; `--driver` names another when there is one. */
const DEFAULT_DRIVER = 'ebs';

/** `stowage snapshots create|ls|rm`: the core's snapshots (VolumeManager.snapshots) from the shell. */
export function addSnapshotCommands(program: Command): void {
  const snapshots = program
    .command('snapshots')
    .description("snapshots of volumes (ebs), kept by the storage and tagged with stowage's names");
  snapshots
    .command('create')
    .description('take a snapshot of a volume under a name (again with the same name: the same snapshot)')
    .argument('<volume>')
    .argument('<name>')
    .action(async (volume: string, name: string, _opts, cmd: Command) => {
      await withRuntime(cmd, async (rt) => {
        const driver = (await rt.manager.get(undefined, volume)).volume.driver;
        print((await rt.manager.snapshots.create(driver, volume, name)).id);
      });
    });
  snapshots
    .command('ls')
    .description("list stowage's snapshots, oldest first: id, name, volume, size, state, created")
    .option('--volume <name>', 'only the snapshots of this volume')
    .option('--driver <name>', 'the driver whose snapshots to list', DEFAULT_DRIVER)
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { volume?: string; driver: string; json?: boolean }, cmd: Command) => {
      await withRuntime(cmd, async (rt) => {
        const filter = opts.volume === undefined ? {} : { volume: opts.volume };
        const { snapshots: list } = await rt.manager.snapshots.list(opts.driver, filter);
        if (opts.json) print(JSON.stringify(list, null, 2));
        else print(renderTable(['ID', 'NAME', 'VOLUME', 'SIZE', 'STATE', 'CREATED'], list.map(row)));
      });
    });
  snapshots
    .command('rm')
    .description('delete a snapshot stowage took (one that is gone already: success)')
    .argument('<id>')
    .option('--driver <name>', 'the driver the snapshot belongs to', DEFAULT_DRIVER)
    .action(async (id: string, opts: { driver: string }, cmd: Command) => {
      await withRuntime(cmd, async (rt) => {
        await rt.manager.snapshots.delete(opts.driver, id);
        print(id);
      });
    });
}

function row(s: VolumeSnapshot): string[] {
  return [s.id, s.name ?? '', s.volume ?? '', formatSize(s.sizeBytes), s.state, s.createdAt.toISOString()];
}
