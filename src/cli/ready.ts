import type { Command } from 'commander';
import { formatMs } from '../base/backoff.js';
import { parseDuration } from '../base/duration.js';
import { socketPath, waitUntilServing } from '../docker/activate.js';
import { configFrom, print } from './context.js';

/**
 * `stowage ready`: exit 0 once every enabled driver's socket answers Plugin.Activate, else 1 at the
 * deadline, naming the sockets that did not. For a container HEALTHCHECK and a systemd
 * ExecStartPost (so units ordered after stowage start only when dockerd can use the plugins).
 */
export function addReadyCommand(program: Command): void {
  program
    .command('ready')
    .description("wait until every enabled driver's plugin socket answers Plugin.Activate")
    .option('--timeout <duration>', 'give up after this long (30s, 500ms, 2m)', '30s')
    .action(async (opts: { timeout: string }, cmd: Command) => {
      const timeoutMs = parseDuration(opts.timeout, '--timeout');
      const config = configFrom(cmd);
      const paths = config.drivers.map((d) => socketPath(config, d));
      const missing = await waitUntilServing(paths, timeoutMs);
      if (missing.length === 0) {
        print(`ready: ${paths.join(', ')}`);
        return;
      }
      process.stderr.write(
        `stowage: not serving after ${formatMs(timeoutMs)}: ${missing.map((m) => `${m.path} (${m.reason})`).join(', ')}\n`,
      );
      process.exitCode = 1;
    });
}
