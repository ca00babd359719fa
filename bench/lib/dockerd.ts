import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';

/**
 * A private dockerd for a benchmark (the suite's helper needs vitest): own data root, exec root
 * and socket, no iptables, a busybox image `bench:busybox` imported from the host's busybox.
 */
export interface BenchDockerd {
  host: string;
  dir: string;
  docker(args: string[], timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export const BENCH_IMAGE = 'bench:busybox';
const DOCKER = '/usr/bin/docker';

export async function startBenchDockerd(): Promise<BenchDockerd> {
  const dir = await mkdtemp(join(tmpdir(), 'stowage-bench-dockerd-'));
  const host = `unix://${join(dir, 'docker.sock')}`;
  const proc: ResultPromise = execa(
    '/usr/sbin/dockerd',
    [
      '--iptables=false',
      '--bridge=none',
      '--data-root',
      join(dir, 'root'),
      '--exec-root',
      join(dir, 'exec'),
      '--pidfile',
      join(dir, 'pid'),
      '-H',
      host,
    ],
    { reject: false, stdin: 'ignore', stdout: 'ignore', stderr: { file: join(dir, 'dockerd.log') } },
  );
  const docker = async (args: string[], timeoutMs = 120_000): Promise<string> => {
    const res = await execa(DOCKER, ['-H', host, ...args], {
      reject: false,
      timeout: timeoutMs,
      stdin: 'ignore',
    });
    if (res.exitCode !== 0) throw new Error(`docker ${args.join(' ')}: ${res.stderr}`);
    return res.stdout.trim();
  };
  const stop = async () => {
    proc.kill('SIGTERM');
    await Promise.race([proc, sleep(20_000)]);
    proc.kill('SIGKILL');
    await proc;
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    for (const mp of mounts.split('\n').map((l) => l.split(' ')[4] ?? '')) {
      if (mp.startsWith(dir)) await execa('umount', ['-l', mp], { reject: false });
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    const info = await execa(DOCKER, ['-H', host, 'info'], { reject: false, timeout: 10_000 });
    if (info.exitCode === 0) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error('dockerd did not start within 60 s');
    }
    await sleep(delay);
  }
  const rootfs = join(dir, 'busybox');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const a of ['sh', 'true', 'cat']) await symlink('busybox', join(rootfs, 'bin', a));
  await execa('tar', ['-C', rootfs, '-cf', join(dir, 'busybox.tar'), '.']);
  await docker(['import', join(dir, 'busybox.tar'), BENCH_IMAGE]);
  return { host, dir, docker, stop };
}
