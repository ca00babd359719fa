import type { Command } from 'commander';
import { FLEX_DRIVERS, VENDOR } from '../../flexvolume/capabilities.js';
import { DEFAULT_PLUGIN_DIR, installFlexvolume } from '../../flexvolume/install.js';
import { print } from './context.js';

/** `stowage flexvolume install`: the Kubernetes drivers into kubelet's plugin directory. */
export function addFlexvolumeCommands(program: Command): void {
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
}
