import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { type CsiClient, csiClient } from '../csi/client.js';
import { within } from '../helpers/deadline.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'stowage.js');

export interface CsiProcessOptions {
  /** The config file (dataDir, hostId…) the plugin shares with the daemon and the CLI. */
  configFile: string;
  driver: string;
  mode: 'node' | 'controller' | 'all';
  socket: string;
  /** --data-dir, when the config file does not set it. */
  dataDir?: string;
  /** --kubelet-dir (the node role's); the default /var/lib/kubelet when not given. */
  kubeletDir?: string;
  logFile: string;
  env?: Record<string, string>;
}

/**
 * The real `stowage csi` (compiled CLI) as a child process, as the node DaemonSet or the
 * controller Deployment runs it, with a grpc-js client on its socket. kill() is a crash (SIGKILL: mounts stay, the socket file too);
 * start() again is the DaemonSet's restart, which must find everything as it was.
 */
export class CsiProcess {
  private child: ResultPromise | undefined;
  private current: CsiClient | undefined;

  constructor(readonly opts: CsiProcessOptions) {}

  get client(): CsiClient {
    if (!this.current) throw new Error('the CSI plugin is not running');
    return this.current;
  }

  /** Starts it and waits until Probe answers ready; the client on its socket. */
  async start(): Promise<CsiClient> {
    const o = this.opts;
    this.child = execa(
      'node',
      [
        '--no-warnings',
        BIN,
        '--config',
        o.configFile,
        ...(o.dataDir ? ['--data-dir', o.dataDir] : []),
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
        ...(o.kubeletDir ? ['--kubelet-dir', o.kubeletDir] : []),
      ],
      { reject: false, stdin: 'ignore', all: true, env: o.env ?? {} },
    );
    this.current = csiClient(o.socket);
    await this.waitReady();
    return this.current;
  }

  /** Waits (20 s at most) until Probe answers ready: registered and reconciled. */
  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      const ready = await this.client.call('Identity', 'Probe', {}, { deadlineMs: 2000 }).then(
        (r) => r.ready?.value === true,
        () => false,
      );
      if (ready) return;
      if (this.child?.exitCode !== null || Date.now() > deadline) {
        const res = this.child ? await within(this.child, 1000) : undefined;
        throw new Error(
          `stowage csi did not become ready within 20 s: ${res ? String(res.all) : 'still running'}`,
        );
      }
      await sleep(delay);
    }
  }

  /** SIGKILL: a crash in the middle of the node's work. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    this.current?.close();
    this.current = undefined;
    if (!child) return;
    child.kill('SIGKILL');
    await within(child, 10_000);
  }

  /** SIGTERM and wait; the exit code (0 on a clean shutdown). */
  async stop(): Promise<number> {
    const child = this.child;
    this.child = undefined;
    this.current?.close();
    this.current = undefined;
    if (!child) return 0;
    child.kill('SIGTERM');
    const res = await within(child, 15_000);
    if (!res) {
      child.kill('SIGKILL');
      await child;
      throw new Error('stowage csi did not stop within 15 s of SIGTERM');
    }
    return res.exitCode ?? -1;
  }

  /** Runs a `stowage` CLI command with the same config. */
  async cli(args: string[]) {
    const res = await execa('node', ['--no-warnings', BIN, '--config', this.opts.configFile, ...args], {
      reject: false,
      timeout: 30_000,
      stdin: 'ignore',
      env: this.opts.env ?? {},
    });
    return { exitCode: res.exitCode ?? -1, stdout: String(res.stdout), stderr: String(res.stderr) };
  }
}
