import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { type CsiClient, csiClient } from '../csi/client.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'stowage.js');

export interface CsiProcessOptions {
  driver: string;
  mode: 'node' | 'controller' | 'all';
  socket: string;
  configFile: string;
  dataDir: string;
  logFile: string;
  env?: Record<string, string>;
}

/**
 * The real `stowage csi` (compiled CLI) as a child process, as the controller Deployment runs it,
 * with a CSI client on its socket. Stopped with SIGTERM (a graceful close) or killed.
 */
export class CsiProcess {
  private child: ResultPromise | undefined;
  client: CsiClient | undefined;

  constructor(private readonly opts: CsiProcessOptions) {}

  async start(): Promise<CsiClient> {
    const o = this.opts;
    this.child = execa(
      'node',
      [
        '--no-warnings',
        BIN,
        '--config',
        o.configFile,
        '--data-dir',
        o.dataDir,
        '--log-level',
        'debug',
        '--log-file',
        o.logFile,
        'csi',
        '--driver',
        o.driver,
        '--mode',
        o.mode,
        '--endpoint',
        `unix://${o.socket}`,
      ],
      { reject: false, stdin: 'ignore', all: true, env: o.env ?? {} },
    );
    this.client = csiClient(o.socket);
    await this.waitServing();
    return this.client;
  }

  /** Waits (20 s at most) until Probe answers on the socket. */
  private async waitServing(): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      const ok = await this.client!.call('Identity', 'Probe', {}, { deadlineMs: 2000 }).then(
        () => true,
        () => false,
      );
      if (ok) return;
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined) {
        throw new Error(`stowage csi exited (${this.child.exitCode}): ${String((await this.child).all)}`);
      }
      if (Date.now() > deadline) throw new Error(`stowage csi did not serve ${this.opts.socket} within 20 s`);
      await sleep(delay);
    }
  }

  /** SIGTERM, then waits for the exit (10 s at most, then SIGKILL). */
  async stop(): Promise<void> {
    this.client?.close();
    this.client = undefined;
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await child;
    clearTimeout(timer);
  }
}
