import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../helpers/deadline.js';
import { DaemonProcess } from './daemon-process.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, PLUGIN_DIR, TEST_IMAGE } from './env.js';
import { installDrivers, KubeletSim, podOptions, pvOptions } from './kubelet-sim.js';

/**
 * The local driver through the installed flexvolume executable, driven as kubelet drives a
 * non-attachable driver (init, getvolumename, mount, unmount), with kubelet's retries; then the
 * same volume used by a Docker container (real dockerd, real plugin socket) and a pod at once.
 */
const POD_A = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';
const POD_B = '6fa459ea-ee8a-3ca4-894e-db77e160355e';
let base: string;
let kubelet: KubeletSim;
let daemon: DaemonProcess;
let dockerd: PrivateDockerd | undefined;

async function mountPoints(): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
}

async function inspect(name: string): Promise<{ mounts: { refs: number; host: string }[] } | undefined> {
  const res = await daemon.cli(['volumes', 'inspect', name]);
  if (res.exitCode === 2) return undefined;
  expect(res.exitCode, res.stderr).toBe(0);
  return JSON.parse(res.stdout).status;
}

async function loopBackingFiles(): Promise<string> {
  return String(
    (await execa('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE'], { reject: false })).stdout,
  );
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-flex-local-'));
  const pluginDir = join(base, 'plugins');
  const kubeletDir = join(base, 'kubelet');
  await mkdir(kubeletDir);
  const configFile = join(base, 'config.yaml');
  await writeFile(
    configFile,
    [`dataDir: ${join(base, 'data')}`, 'flexvolume:', `  kubeletDir: ${kubeletDir}`, ''].join('\n'),
  );
  await installDrivers(pluginDir, ['local', 'nfs', 'efs', 'ebs']);
  kubelet = new KubeletSim({ pluginDir, kubeletDir, driver: 'local', env: { STOWAGE_CONFIG: configFile } });
  dockerd = await startDockerd();
  daemon = new DaemonProcess({
    dataDir: join(base, 'data'),
    socketDir: PLUGIN_DIR,
    logFile: join(base, 'daemon.log'),
    configFile,
  });
  await daemon.start();
}, 120_000);

afterAll(async () => {
  await docker(['rm', '-f', 'flex-c1']);
  for (const v of ['flex-shared']) await docker(['volume', 'rm', v]);
  for (const v of ['flex-pv1']) await daemon?.cli(['volumes', 'rm', v]);
  await dockerd?.stop();
  await daemon?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('flexvolume local: kubelet call sequence', () => {
  it('installs one executable per driver under stowage~<driver>/<driver>', async () => {
    for (const d of ['local', 'nfs', 'efs', 'ebs']) {
      expect(existsSync(join(base, 'plugins', `stowage~${d}`, d))).toBe(true);
    }
  });

  it('answers init with the capabilities of each driver', async () => {
    const caps = async (driver: string) =>
      (await new KubeletSim({ ...kubelet.opts, driver }).ok(['init'])).capabilities;
    expect(await caps('local')).toEqual({
      attach: false,
      fsGroup: true,
      requiresFSResize: false,
      selinuxRelabel: true,
      supportsMetrics: false,
    });
    expect(await caps('nfs')).toMatchObject({ attach: false, fsGroup: false });
    expect(await caps('efs')).toMatchObject({ attach: false, fsGroup: false });
    expect(await caps('ebs')).toMatchObject({ attach: true, fsGroup: true, requiresFSResize: true });
  });

  it('names the volume: options.name, else the PV', async () => {
    expect(await kubelet.ok(['getvolumename', JSON.stringify(pvOptions('flex-pv1', {}))])).toEqual({
      status: 'Success',
      volumeName: 'flex-pv1',
    });
    const named = JSON.stringify(pvOptions('pv-x', { name: 'flex-data' }));
    expect((await kubelet.ok(['getvolumename', named])).volumeName).toBe('flex-data');
  });

  it('mounts for two pods, each retry counted once, and unmounts after the last', async () => {
    const opts = pvOptions('flex-pv1', { size: '64M' });
    await kubelet.mountPod(POD_A, 'flex-pv1', opts);
    await kubelet.mountPod(POD_A, 'flex-pv1', opts); // kubelet retried: already a mount point
    await writeFile(join(kubelet.podDir(POD_A, 'flex-pv1'), 'f'), 'from-pod-a');
    await kubelet.mountPod(POD_B, 'flex-pv1', pvOptions('flex-pv1', { size: '64M' }, 'ro'));
    expect(await readFile(join(kubelet.podDir(POD_B, 'flex-pv1'), 'f'), 'utf8')).toBe('from-pod-a');
    // readwrite=ro: pod B's view is read-only, pod A's is not.
    const roWrite = await execa('sh', ['-c', `echo x > ${kubelet.podDir(POD_B, 'flex-pv1')}/g`], {
      reject: false,
    });
    expect(roWrite.exitCode).not.toBe(0);
    expect(roWrite.stderr).toMatch(/Read-only file system/);
    expect((await inspect('flex-pv1'))?.mounts).toEqual([
      expect.objectContaining({ refs: 2, state: 'mounted' }),
    ]);

    await kubelet.unmountPod(POD_A, 'flex-pv1');
    await kubelet.ok(['unmount', kubelet.podDir(POD_A, 'flex-pv1')]); // retried after success
    expect((await inspect('flex-pv1'))?.mounts).toEqual([expect.objectContaining({ refs: 1 })]);
    expect(await readFile(join(kubelet.podDir(POD_B, 'flex-pv1'), 'f'), 'utf8')).toBe('from-pod-a');
    await kubelet.unmountPod(POD_B, 'flex-pv1');
    expect((await inspect('flex-pv1'))?.mounts).toEqual([]);
    const points = await mountPoints();
    expect(points.filter((p) => p.startsWith(base))).toEqual([]);
    expect(await loopBackingFiles()).not.toContain(base);
  });

  it("a mount killed between its count and its bind is settled by the daemon's reconcile", async () => {
    const opts = pvOptions('flex-crash', { size: '64M' });
    const dir = kubelet.podDir(POD_A, 'flex-crash');
    await mkdir(dir, { recursive: true, mode: 0o750 });
    await daemon.stop();
    // SIGKILL right after the volume was mounted and counted for the pod, before the bind mount.
    const killed = await execa(kubelet.executable, ['mount', dir, JSON.stringify(podOptions(POD_A, opts))], {
      reject: false,
      stdin: 'ignore',
      env: { ...kubelet.opts.env, STOWAGE_TEST_CRASH_AT: 'publish:counted' },
    });
    expect(killed.signal).toBe('SIGKILL');
    const points = await mountPoints();
    expect(points).not.toContain(dir);
    expect(points).toContain(join(base, 'data', 'volumes', 'flex-crash'));
    await daemon.start(); // reconciles at start
    await until(
      'the reconcile at start',
      async () => (((await inspect('flex-crash'))?.mounts ?? ['x']).length === 0 ? true : undefined),
      30_000,
    );
    expect(await mountPoints()).not.toContain(join(base, 'data', 'volumes', 'flex-crash'));
    expect(await loopBackingFiles()).not.toContain('flex-crash');
    expect(await readFile(join(base, 'daemon.log'), 'utf8')).toContain(
      `interrupted publish of flex-crash at ${dir}: its count without a bind released`,
    );
    // kubelet's retry finds nothing in its way.
    await kubelet.mountPod(POD_A, 'flex-crash', opts);
    expect((await inspect('flex-crash'))?.mounts).toEqual([expect.objectContaining({ refs: 1 })]);
    await kubelet.unmountPod(POD_A, 'flex-crash');
    expect((await inspect('flex-crash'))?.mounts).toEqual([]);
    expect((await daemon.cli(['volumes', 'rm', 'flex-crash'])).exitCode).toBe(0);
  });

  it('shares a volume with a Docker container: counts add up, neither unmounts the other', async () => {
    const created = await docker([
      'volume',
      'create',
      '-d',
      'stowage-local',
      '-o',
      'size=64M',
      'flex-shared',
    ]);
    expect(created.exitCode, created.stderr).toBe(0);
    const c = await docker([
      'run',
      '-d',
      '--name',
      'flex-c1',
      '--network',
      'none',
      '-v',
      'flex-shared:/data',
      TEST_IMAGE,
      'sh',
      '-c',
      'echo from-docker > /data/d; sleep 600',
    ]);
    expect(c.exitCode, c.stderr).toBe(0);
    const opts = pvOptions('pv-shared', { name: 'flex-shared' });
    await kubelet.mountPod(POD_A, 'pv-shared', opts);
    const podDir = kubelet.podDir(POD_A, 'pv-shared');
    await expect
      .poll(() => readFile(join(podDir, 'd'), 'utf8').catch(() => ''), { timeout: 10_000 })
      .toBe('from-docker\n');
    expect((await inspect('flex-shared'))?.mounts).toEqual([expect.objectContaining({ refs: 2 })]);

    // The pod goes: the container keeps its mount.
    await kubelet.unmountPod(POD_A, 'pv-shared');
    expect((await inspect('flex-shared'))?.mounts).toEqual([expect.objectContaining({ refs: 1 })]);
    const seen = await docker(['exec', 'flex-c1', 'cat', '/data/d']);
    expect(seen.stdout).toBe('from-docker');

    // A pod comes back; now the container goes: the pod keeps its mount.
    await kubelet.mountPod(POD_B, 'pv-shared', opts);
    expect((await docker(['rm', '-f', 'flex-c1'])).exitCode).toBe(0);
    await expect
      .poll(async () => (await inspect('flex-shared'))?.mounts[0]?.refs, { timeout: 10_000 })
      .toBe(1);
    expect(await readFile(join(kubelet.podDir(POD_B, 'pv-shared'), 'd'), 'utf8')).toBe('from-docker\n');
    // Remove is refused while the pod uses it, from either door.
    const rm1 = await docker(['volume', 'rm', 'flex-shared']);
    expect(rm1.exitCode).not.toBe(0);
    expect(rm1.stderr).toMatch(/in use by 1 mount on host/);
    await kubelet.unmountPod(POD_B, 'pv-shared');
    expect((await inspect('flex-shared'))?.mounts).toEqual([]);
    expect((await docker(['volume', 'rm', 'flex-shared'])).exitCode).toBe(0);
  });

  it('keeps compiled code next to the bundle on Node 22 and later (Node 20 has no compile cache)', async () => {
    await kubelet.ok(['unmount', kubelet.podDir(POD_A, 'never-mounted')]); // a call that loads the store
    const driverDir = join(base, 'plugins', 'stowage~local');
    const [version] = (await readdir(driverDir)).filter((e) => e.startsWith('.v-'));
    const cached = existsSync(join(driverDir, version ?? 'none', '.compile-cache'));
    expect(cached, `Node ${process.versions.node}`).toBe(Number(process.versions.node.split('.')[0]) >= 22);
  });
});

describe('flexvolume local: bad input fails clearly and changes nothing', () => {
  async function volumesNow(): Promise<string> {
    return (await daemon.cli(['volumes', 'ls', '--json'])).stdout;
  }

  it('answers Not supported for calls it does not implement, with exit 0', async () => {
    for (const call of ['attach', 'waitforattach', 'expandvolume', 'frobnicate']) {
      const res = await kubelet.call([call, '{}', 'node-1']);
      expect(res.reply).toEqual({
        status: 'Not supported',
        message: `stowage/local does not implement ${call}`,
      });
    }
  });

  it('fails without arguments, on malformed JSON, without a volume name, outside kubelet paths', async () => {
    const before = await volumesNow();
    const points = await mountPoints();
    expect(await kubelet.fails([])).toMatch(/^no call given/);
    const pod = kubelet.podDir(POD_A, 'pv-bad');
    await mkdir(pod, { recursive: true });
    expect(await kubelet.fails(['mount', pod, '{"kubernetes.io/pvOrVolumeName": '])).toMatch(
      /^the options argument is not valid JSON/,
    );
    expect(await kubelet.fails(['mount', pod])).toBe('the options JSON argument is missing');
    expect(await kubelet.fails(['mount', pod, '{"kubernetes.io/fsType":""}'])).toMatch(/name no volume/);
    expect(await kubelet.fails(['mount', pod, '["a"]'])).toMatch(/must be a JSON object/);
    expect(
      await kubelet.fails(['mount', pod, JSON.stringify(pvOptions('pv-bad', { size: 'huge' }))]),
    ).toMatch(/size/);
    expect(
      await kubelet.fails(['mount', pod, JSON.stringify(pvOptions('pv-bad', { colour: 'red' }))]),
    ).toMatch(/^unknown option "colour" for driver local; valid options: size, fsType, onRemove$/);
    const opts = JSON.stringify(pvOptions('pv-bad', {}));
    expect(await kubelet.fails(['mount', '/etc', opts])).toMatch(/is not a pod volume directory/);
    expect(await kubelet.fails(['mount', `${pod}/../../../../../../etc`, opts])).toMatch(
      /not a clean absolute path/,
    );
    expect(await kubelet.fails(['mount', 'relative/dir', opts])).toMatch(/not a clean absolute path/);
    expect(await kubelet.fails(['unmount', '/var/lib/docker'])).toMatch(/is not a pod volume directory/);
    expect(
      await kubelet.fails([
        'mount',
        pod,
        JSON.stringify({ ...pvOptions('pv-bad', {}), 'kubernetes.io/secret/k': '!!' }),
      ]),
    ).toBe('secret key k is not base64 as kubelet sends it');
    expect(await volumesNow()).toBe(before);
    expect(await mountPoints()).toEqual(points);
  });
});
