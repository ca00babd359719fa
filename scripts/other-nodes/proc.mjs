// One bounded child process: argv array, no shell, a deadline that kills its whole process group.
import { spawn } from 'node:child_process';

/**
 * Runs `cmd args` and resolves with its exit code and output (stdout and stderr together, the last
 * 64 KiB). Never rejects for a failing command: callers turn a bad result into a message. A
 * command still running at `timeoutMs` is killed (its process group: npm and node-gyp start
 * children) and resolves with `timedOut`.
 *
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ cwd?: string, env?: NodeJS.ProcessEnv, timeoutMs: number, onLine?: (line: string) => void }} opts
 * @returns {Promise<{ code: number | null, signal: string | null, timedOut: boolean, output: string }>}
 */
export function run(cmd, args, opts) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so the deadline can end its children too
    });
    let output = '';
    let partial = '';
    const take = (/** @type {Buffer} */ chunk) => {
      const text = chunk.toString('utf8');
      output = (output + text).slice(-65_536);
      if (!opts.onLine) return;
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) opts.onLine(line);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, opts.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, timedOut, output: `${output}\n${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (partial && opts.onLine) opts.onLine(partial);
      resolve({ code, signal, timedOut, output });
    });
  });
}

/** The last lines of a command's output, for an error message. */
export function tail(output, lines = 15) {
  return output.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Seconds since `start` (from performance.now()), one decimal. */
export function seconds(start) {
  return ((performance.now() - start) / 1000).toFixed(1);
}
