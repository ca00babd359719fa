import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { inject } from 'vitest';
import { within } from '../helpers/deadline.js';
import { DOCKER_CLI, setDockerHost, TEST_IMAGE } from './env.js';

/**
 * A private dockerd for one test file: its own data root, exec root and socket, no iptables, the
 * busybox test image imported. One per file because dockerd caches every plugin it has talked to
 * and keeps asking it (with 30 s of retries) once its socket is gone: a file's stopped plugins
 * must not slow the next file down.
 */
export interface PrivateDockerd {
  host: string;
  /** dockerd's own log: managed plugins' output and errors end up here. */
  logFile: string;
  /** Stops and starts the same dockerd (same data root): what a host reboot or upgrade does. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startDockerd(): Promise<PrivateDockerd> {
  const dir = await mkdtemp(join(tmpdir(), 'stowage-dockerd-'));
  const sock = join(dir, 'docker.sock');
  const host = `unix://${sock}`;
  const logFile = join(dir, 'dockerd.log');
  const spawn = (): ResultPromise =>
    execa(
      '/usr/sbin/dockerd',
      [
        '--iptables=false',
        '--bridge=none',
        '--data-root',
        join(dir, 'root'),
        '--exec-root',
        join(dir, 'exec'),
        '--pidfile',
        join(dir, 'dockerd.pid'),
        '-H',
        host,
      ],
      { reject: false, stdin: 'ignore', stdout: 'ignore', stderr: { file: logFile, append: true } },
    );
  let proc = spawn();
  const halt = async () => {
    proc.kill('SIGTERM');
    if ((await within(proc, 20_000)) === undefined) {
      proc.kill('SIGKILL');
      await proc;
    }
  };
  const stop = async () => {
    // Containers first: one still using a volume whose plugin is gone would hold dockerd in
    // 30 s of Unmount retries, past halt()'s grace, and survive it with its shim and mounts.
    const ps = await execa(DOCKER_CLI, ['-H', host, 'ps', '-aq'], { reject: false, timeout: 20_000 });
    const ids = String(ps.stdout ?? '')
      .split('\n')
      .filter(Boolean);
    if (ids.length > 0)
      await execa(DOCKER_CLI, ['-H', host, 'rm', '-f', ...ids], { reject: false, timeout: 60_000 });
    await halt();
    await killOrphans(join(dir, 'exec'));
    // dockerd unmounts its overlays on a clean stop; anything left would make rm fail loudly.
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    for (const line of mounts.split('\n')) {
      const mp = line.split(' ')[4];
      if (mp?.startsWith(dir)) await execa('umount', ['-l', mp], { reject: false });
    }
    await rm(dir, { recursive: true, force: true });
  };
  const waitReady = async () => {
    const deadline = Date.now() + 60_000;
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      const info = await execa(DOCKER_CLI, ['-H', host, 'info', '--format', '{{.ServerVersion}}'], {
        reject: false,
        timeout: 10_000,
      });
      if (info.exitCode === 0) break;
      if (proc.exitCode !== null || Date.now() > deadline) {
        const log = await readFile(logFile, 'utf8').catch(() => '');
        throw new Error(
          `dockerd did not become ready within 60 s:\n${log.split('\n').slice(-15).join('\n')}`,
        );
      }
      await sleep(delay);
    }
  };
  try {
    await waitReady();
    const imported = await execa(DOCKER_CLI, ['-H', host, 'import', inject('busyboxTarball'), TEST_IMAGE], {
      reject: false,
      timeout: 60_000,
    });
    if (imported.exitCode !== 0)
      throw new Error(`docker import of the busybox test image failed: ${imported.stderr}`);
  } catch (err) {
    await stop();
    throw err;
  }
  setDockerHost(host);
  const restart = async () => {
    await halt();
    proc = spawn();
    await waitReady();
  };
  return { host, logFile, restart, stop };
}

/**
 * Container processes that outlived dockerd (a container still using a volume whose plugin is gone
 * holds dockerd in Unmount retries past halt()'s grace): each shim under this dockerd's exec root,
 * its children first, by pid. Normally there are none.
 */
async function killOrphans(execRoot: string): Promise<void> {
  const procs: { pid: number; ppid: number; cmd: string }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const st = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
    procs.push({ pid: Number(entry), ppid, cmd: cmd.replaceAll('\0', ' ') });
  }
  for (const shim of procs.filter(
    (p) => p.cmd.includes('containerd-shim') && p.cmd.includes(`${execRoot}/`),
  )) {
    for (const child of procs.filter((p) => p.ppid === shim.pid)) kill(child.pid);
    kill(shim.pid);
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
