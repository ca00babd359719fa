import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { within } from '../helpers/deadline.js';
import { callPlugin } from '../helpers/plugin-client.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'stowage.js');

export interface DaemonOptions {
  dataDir: string;
  socketDir: string;
  logFile: string;
  drivers?: string[];
  /** A config file for the daemon and CLI (default: none, an empty one). */
  configFile?: string;
  /** Extra environment for the daemon and CLI (e.g. AWS credentials for a test endpoint). */
  env?: Record<string, string>;
}

/** The real `stowage daemon` (compiled CLI) as a child process, as an operator runs it. */
export class DaemonProcess {
  private child: ResultPromise | undefined;

  constructor(private readonly opts: DaemonOptions) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  socket(driver = 'local'): string {
    return join(this.opts.socketDir, `stowage-${driver}.sock`);
  }

  globalArgs(): string[] {
    // Always an explicit config file, so a host's /etc/stowage/config.yaml cannot leak in.
    return [
      '--config',
      this.opts.configFile ?? '/dev/null',
      '--data-dir',
      this.opts.dataDir,
      '--socket-dir',
      this.opts.socketDir,
    ];
  }

  async start(): Promise<void> {
    this.launch();
    await this.waitServing();
  }

  /** Spawns the daemon without waiting for it (to kill it while it starts, say). */
  launch(): void {
    this.child = execa(
      'node',
      [
        '--no-warnings',
        BIN,
        ...this.globalArgs(),
        '--drivers',
        (this.opts.drivers ?? ['local']).join(','),
        '--log-level',
        'debug',
        '--log-file',
        this.opts.logFile,
        'daemon',
      ],
      { reject: false, stdin: 'ignore', all: true, env: this.opts.env ?? {} },
    );
  }

  /** Waits (20 s at most) until the launched daemon's socket answers Plugin.Activate. */
  async waitServing(): Promise<void> {
    if (!this.child) throw new Error('the daemon was not launched');
    const deadline = Date.now() + 20_000;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      if (existsSync(this.socket())) {
        const ok = await callPlugin(this.socket(), 'Plugin.Activate', '', 2000).then(
          (r) => Array.isArray(r.body.Implements),
          () => false,
        );
        if (ok) return;
      }
      if (this.child.exitCode !== null || Date.now() > deadline) {
        const res = await within(this.child, 1000);
        throw new Error(
          `stowage daemon did not start within 20 s: ${res ? String(res.all) : 'still running'}`,
        );
      }
      await sleep(delay);
    }
  }

  /** SIGKILL, as a crash or a lost machine: no cleanup, no lease revoked, mounts left. */
  async kill(): Promise<void> {
    if (!this.child) return;
    const child = this.child;
    this.child = undefined;
    child.kill('SIGKILL');
    await within(child, 10_000);
  }

  /** Whether the daemon exits (by itself) within `ms`; once it has, it counts as stopped. */
  async exitsWithin(ms: number): Promise<boolean> {
    if (!this.child) return true;
    const res = await within(this.child, ms);
    if (res) this.child = undefined;
    return res !== undefined;
  }

  /** SIGTERM and wait; returns the exit code (0 on a clean shutdown). */
  async stop(): Promise<number> {
    if (!this.child) return 0;
    const child = this.child;
    this.child = undefined;
    child.kill('SIGTERM');
    const res = await within(child, 15_000);
    if (!res) {
      child.kill('SIGKILL');
      await child;
      throw new Error('stowage daemon did not stop within 15 s of SIGTERM');
    }
    return res.exitCode ?? -1;
  }

  /** Runs a `stowage` CLI command against the same data directory. */
  async cli(args: string[]) {
    const res = await execa('node', ['--no-warnings', BIN, ...this.globalArgs(), ...args], {
      reject: false,
      timeout: 30_000,
      stdin: 'ignore',
      env: this.opts.env ?? {},
    });
    return { exitCode: res.exitCode ?? -1, stdout: String(res.stdout), stderr: String(res.stderr) };
  }
}
