import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StowageError } from '../../src/base/errors.js';
import type { Config } from '../../src/config.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import type { RequestSample, StateStore } from '../../src/state/store.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';

/**
 * Each flexvolume call that opens the store counts itself there (door `flexvolume`), for the
 * daemon's /metrics: once, with its outcome; init and getvolumename open nothing and count nothing;
 * a store that cannot count leaves the reply as it was. In process, as test/flexvolume/calls.test.ts.
 */

const state = vi.hoisted(() => ({
  base: undefined as TestRuntime | undefined,
  opened: [] as TestRuntime[],
  store: undefined as ((path: string) => StateStore) | undefined,
}));

vi.mock('../../flexvolume/runtime.js', () => ({
  flexConfig: (driver: string): Config => {
    const config = state.base!.config;
    return { ...config, drivers: [driver], flexvolume: { ...config.flexvolume, kubeletDir: kubelet() } };
  },
  openFlexRuntime: async () => {
    const { createTestRuntime: open } = await import('../helpers/runtime.js');
    const t = await open({
      sameHostAs: state.base!,
      flags: { flexvolume: { kubeletDir: kubelet() } },
      ...(state.store ? { store: state.store } : {}),
    });
    state.opened.push(t);
    return t.runtime;
  },
}));

const { flexMain } = await import('../../flexvolume/main.js');

function kubelet(): string {
  return join(state.base!.dir, 'kubelet');
}

const POD = 'a1b2c3d4-0000-4000-8000-00000000000a';
const podDir = () => join(kubelet(), 'pods', POD, 'volumes', 'stowage~local', 'data');
const opts = (extra: Record<string, string> = {}) =>
  JSON.stringify({ 'kubernetes.io/pvOrVolumeName': 'v1', ...extra });

let t: TestRuntime;
beforeEach(async () => {
  t = await createTestRuntime();
  state.base = t;
  state.opened = [];
  state.store = undefined;
});
afterEach(async () => {
  await t.cleanup();
});

/** This host's tallies as label sets with their counts (durations vary from run to run). */
async function counted(): Promise<string[]> {
  const tallies = await t.store.requestTallies(TEST_HOST);
  const byLabels = new Map<string, number>();
  for (const r of tallies) {
    const key = `${r.door} ${r.driver} ${r.operation} ${r.code}`;
    byLabels.set(key, (byLabels.get(key) ?? 0) + r.count);
  }
  return [...byLabels].map(([k, n]) => `${k} ${n}`).sort();
}

describe('flexvolume calls counted in the store', () => {
  it('counts each store-opening call once, with its outcome; init and getvolumename not at all', async () => {
    expect((await flexMain('local', ['init'])).status).toBe('Success');
    expect((await flexMain('local', ['getvolumename', opts()])).status).toBe('Success');
    expect((await flexMain('local', ['frobnicate'])).status).toBe('Not supported');
    expect(await counted()).toEqual([]);

    expect(await flexMain('local', ['mount', podDir(), opts({ size: '64M' })])).toEqual({
      status: 'Success',
    });
    const wrongPod = opts({ 'kubernetes.io/pod.uid': 'b1b2c3d4-0000-4000-8000-00000000000b' });
    expect((await flexMain('local', ['mount', podDir(), wrongPod])).status).toBe('Failure');
    expect(await flexMain('local', ['unmount', podDir()])).toEqual({ status: 'Success' });
    expect(await flexMain('local', ['unmount', podDir()])).toEqual({ status: 'Success' });

    expect(await counted()).toEqual([
      'flexvolume local mount INVALID_ARGUMENT 1',
      'flexvolume local mount OK 1',
      'flexvolume local unmount OK 2',
    ]);
    for (const r of await t.store.requestTallies(TEST_HOST)) expect(r.seconds).toBeGreaterThan(0);
  });

  it('makes one store write to count a call', async () => {
    const writes: RequestSample[] = [];
    state.store = (path) =>
      new (class extends SqliteStore {
        override async recordRequest(host: string, sample: RequestSample) {
          writes.push(sample);
          return super.recordRequest(host, sample);
        }
      })(path);
    await flexMain('local', ['mount', podDir(), opts({ size: '64M' })]);
    expect(writes.map((w) => `${w.door} ${w.operation} ${w.code}`)).toEqual(['flexvolume mount OK']);
  });

  it('answers as it would have when the store cannot count the call', async () => {
    state.store = (path) =>
      new (class extends SqliteStore {
        override async recordRequest(): Promise<void> {
          throw new StowageError('UNAVAILABLE', 'database is locked');
        }
      })(path);
    expect(await flexMain('local', ['mount', podDir(), opts({ size: '64M' })])).toEqual({
      status: 'Success',
    });
    expect(t.mounter.table.has(podDir())).toBe(true);
    expect(await flexMain('local', ['unmount', podDir()])).toEqual({ status: 'Success' });
    expect(await counted()).toEqual([]);
  });
});
