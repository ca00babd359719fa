import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * kubelet's calls of the `local` flexvolume driver, answered in this process: flexMain (argv ->
 * handler -> reply) over the real VolumeManager and SQLite store on the fake kernel. Each call
 * opens its own runtime on the shared state file and fakes, and closes it, as the executable does
 * once per process. The e2e files run the installed executable; this pins the exact replies.
 */

const state = vi.hoisted(() => ({ base: undefined as TestRuntime | undefined, opened: [] as TestRuntime[] }));

vi.mock('../../flexvolume/runtime.js', () => ({
  // The daemon's config as the executable reads it, with kubelet's directory in the test's temp dir.
  flexConfig: (driver: string): Config => {
    const config = state.base!.config;
    return { ...config, drivers: [driver], flexvolume: { ...config.flexvolume, kubeletDir: kubelet() } };
  },
  openFlexRuntime: async () => {
    const { createTestRuntime: open } = await import('../helpers/runtime.js');
    const t = await open({ sameHostAs: state.base!, flags: { flexvolume: { kubeletDir: kubelet() } } });
    state.opened.push(t);
    return t.runtime;
  },
}));

const { flexMain } = await import('../../flexvolume/main.js');

function kubelet(): string {
  return join(state.base!.dir, 'kubelet');
}

let t: TestRuntime;

beforeEach(async () => {
  t = await createTestRuntime();
  state.base = t;
  state.opened = [];
});

afterEach(async () => {
  // Each call's runtime was closed by the call itself; the base one owns the temp directory.
  await t.cleanup();
});

const POD_A = 'a1b2c3d4-0000-4000-8000-00000000000a';
const POD_B = 'a1b2c3d4-0000-4000-8000-00000000000b';

function podDir(pod: string, vol = 'data'): string {
  return join(kubelet(), 'pods', pod, 'volumes', 'stowage~local', vol);
}

function opts(extra: Record<string, string> = {}): string {
  return JSON.stringify({ 'kubernetes.io/pvOrVolumeName': 'v1', ...extra });
}

/** The call, and the reply exactly as the executable prints it (one JSON object). */
async function call(...args: string[]): Promise<string> {
  return JSON.stringify(await flexMain('local', args));
}

describe('flexvolume call handlers for local, in process', () => {
  it('init answers the capabilities without opening the store', async () => {
    expect(await call('init')).toBe(
      '{"status":"Success","capabilities":{"attach":false,"fsGroup":true,"requiresFSResize":false,"selinuxRelabel":true,"supportsMetrics":false}}',
    );
    expect(state.opened).toHaveLength(0);
  });

  it('getvolumename answers the PV name without opening the store', async () => {
    expect(await call('getvolumename', opts())).toBe('{"status":"Success","volumeName":"v1"}');
    expect(state.opened).toHaveLength(0);
  });

  it('answers Not supported to the attach calls (local attaches its loop device at mount)', async () => {
    const device = join(kubelet(), 'plugins/kubernetes.io/flexvolume/stowage/local/mounts/v1');
    const replies = [
      await call('attach', opts(), 'node-1'),
      await call('isattached', opts(), 'node-1'),
      await call('waitforattach', '/dev/loop0', opts()),
      await call('mountdevice', device, '/dev/loop0', opts()),
      await call('unmountdevice', device),
      await call('detach', 'v1', 'node-1'),
    ];
    expect(replies).toEqual(
      ['attach', 'isattached', 'waitforattach', 'mountdevice', 'unmountdevice', 'detach'].map(
        (c) => `{"status":"Not supported","message":"stowage/local does not implement ${c}"}`,
      ),
    );
    expect(state.opened).toHaveLength(0);
    expect(await t.store.listVolumes()).toEqual([]);
    expect(t.mounter.table.size).toBe(0);
  });

  it('mount creates the volume on first use, mounts it once per host and binds it into each pod', async () => {
    expect(await call('mount', podDir(POD_A), opts({ size: '64M' }))).toBe('{"status":"Success"}');
    const hostMount = join(t.config.mountRoot, 'v1');
    expect(t.mounter.table.get(podDir(POD_A))).toMatchObject({ options: ['bind'], root: '/' });
    expect(t.mounter.table.has(hostMount)).toBe(true);
    expect((await t.store.getVolume('v1'))?.driver).toBe('local');

    // A retry whose reply was lost changes nothing.
    expect(await call('mount', podDir(POD_A), opts({ size: '64M' }))).toBe('{"status":"Success"}');
    // A second pod, read-only.
    const ro = opts({ 'kubernetes.io/readwrite': 'ro' });
    expect(await call('mount', podDir(POD_B), ro)).toBe('{"status":"Success"}');
    expect(t.mounter.table.get(podDir(POD_B))).toMatchObject({ options: ['bind', 'ro'], root: '/' });
    expect(t.mounter.callsOf('mount').filter((c) => c.path === hostMount)).toHaveLength(1);
    const [mount] = await t.store.getMounts('v1');
    expect(mount?.refs).toEqual({ [`pod:${POD_A}:data`]: 1, [`pod:${POD_B}:data`]: 1 });

    // The first pod leaves: its bind mount goes, the host mount stays for the second.
    expect(await call('unmount', podDir(POD_A))).toBe('{"status":"Success"}');
    expect(t.mounter.table.has(podDir(POD_A))).toBe(false);
    expect(t.mounter.table.has(hostMount)).toBe(true);
    // The last pod leaves: nothing of the volume stays mounted; the volume stays.
    expect(await call('unmount', podDir(POD_B))).toBe('{"status":"Success"}');
    expect(t.mounter.table.size).toBe(0);
    expect(await t.store.getMounts('v1')).toEqual([]);
    expect((await t.store.getVolume('v1'))?.name).toBe('v1');
    // Unmount of what is no longer mounted is success (kubelet retries).
    expect(await call('unmount', podDir(POD_B))).toBe('{"status":"Success"}');
    expect(state.opened.length).toBeGreaterThan(0);
  });

  it('refuses a path outside the pod volume directories of this driver, mounting nothing', async () => {
    const wrong = join(kubelet(), 'pods', POD_A, 'volumes', 'stowage~nfs', 'data');
    expect(JSON.parse(await call('mount', wrong, opts()))).toEqual({
      status: 'Failure',
      message: `${wrong} is not a pod volume directory of this driver (${join(kubelet(), 'pods/<pod-uid>/volumes/stowage~local/<volume>')}); nothing was mounted there`,
    });
    expect(t.mounter.table.size).toBe(0);
    expect(await t.store.listVolumes()).toEqual([]);
  });

  it('refuses a pod uid in the options that is not the pod of the directory', async () => {
    expect(JSON.parse(await call('mount', podDir(POD_A), opts({ 'kubernetes.io/pod.uid': POD_B })))).toEqual({
      status: 'Failure',
      message: `pod uid ${POD_B} in the options does not match the pod directory ${podDir(POD_A)}`,
    });
    expect(t.mounter.table.size).toBe(0);
  });

  it('answers Not supported to calls it does not know and to resize for local', async () => {
    expect(await call('expandvolume', opts(), '/x', '2000', '1000')).toBe(
      '{"status":"Not supported","message":"stowage/local does not implement expandvolume"}',
    );
    expect(await call('frobnicate')).toBe(
      '{"status":"Not supported","message":"stowage/local does not implement frobnicate"}',
    );
  });
});
