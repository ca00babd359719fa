import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type RunningDaemon, startDaemon } from '../../src/cli/daemon.js';
import { StowageMetrics } from '../../src/metrics/metrics.js';
import type { Runtime } from '../../src/runtime.js';
import { callPlugin } from '../helpers/plugin-client.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';
import { listeningTcpSockets } from './listening.js';
import { type Sample, sampleValue, scrape } from './scrape.js';

/**
 * The daemon's /metrics over the fake kernel, with real sockets: the plugin socket's requests,
 * the store's gauges and timings and reconcile's actions move by exactly what was done.
 */
let t: TestRuntime | undefined;
let daemon: RunningDaemon | undefined;

afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  await t?.cleanup();
  t = undefined;
});

async function startWithMetrics(flags: Record<string, unknown> = {}): Promise<RunningDaemon> {
  t = await createTestRuntime({
    flags: { metrics: { listen: '127.0.0.1:0' }, ...flags },
    metrics: new StowageMetrics(),
  });
  return start(t.runtime);
}

async function start(rt: Runtime): Promise<RunningDaemon> {
  daemon = await startDaemon(rt, {
    checkPropagation: async () => ({ ok: true, why: 'host namespace unknown' }),
    stopGraceMs: 2000,
  });
  return daemon;
}

function plugin(op: string, body: unknown) {
  if (!t) throw new Error('no runtime');
  return callPlugin(join(t.config.socketDir, 'stowage-local.sock'), `VolumeDriver.${op}`, body);
}

async function samples(d: RunningDaemon): Promise<Sample[]> {
  const page = await scrape(`http://${d.metrics?.address}/metrics`);
  expect(page.status).toBe(200);
  expect(page.type).toMatch(/^text\/plain; version=0\.0\.4/);
  return page.samples;
}

const docker = (operation: string, code: string) => ({ door: 'docker', driver: 'local', operation, code });

describe('/metrics of a daemon with metrics.listen', () => {
  it('counts each Docker request by operation and code, and times it', async () => {
    const d = await startWithMetrics();
    const N = 3;
    for (let i = 0; i < N; i++) {
      expect((await plugin('Create', { Name: `m${i}`, Opts: { size: '16M' } })).body.Err).toBe('');
      expect((await plugin('Mount', { Name: `m${i}`, ID: `c${i}` })).body.Err).toBe('');
    }
    // Refusals carry their code: a missing volume, a bad option.
    expect((await plugin('Mount', { Name: 'nope', ID: 'c9' })).body.Err).toMatch(/nope/);
    expect((await plugin('Create', { Name: 'bad', Opts: { colour: 'red' } })).body.Err).toMatch(/colour/);

    let s = await samples(d);
    expect(sampleValue(s, 'stowage_requests_total', docker('Create', 'OK'))).toBe(N);
    expect(sampleValue(s, 'stowage_requests_total', docker('Mount', 'OK'))).toBe(N);
    expect(sampleValue(s, 'stowage_requests_total', docker('Mount', 'NOT_FOUND'))).toBe(1);
    expect(sampleValue(s, 'stowage_requests_total', docker('Create', 'INVALID_ARGUMENT'))).toBe(1);
    expect(sampleValue(s, 'stowage_requests_total', docker('Unmount', 'OK'))).toBe(0);
    const mountTimes = { door: 'docker', driver: 'local', operation: 'Mount' };
    expect(sampleValue(s, 'stowage_request_duration_seconds_count', mountTimes)).toBe(N + 1);
    expect(sampleValue(s, 'stowage_request_duration_seconds_bucket', { ...mountTimes, le: '+Inf' })).toBe(
      N + 1,
    );
    // Gauges read from the store at scrape time: N local volumes mounted and attached here.
    expect(sampleValue(s, 'stowage_mounts', { driver: 'local', state: 'mounted' })).toBe(N);
    expect(sampleValue(s, 'stowage_attachments', { driver: 'local', state: 'attached' })).toBe(N);
    // The waits: N loop devices attached, N mounts of ext4 (the fake kernel's mkfs made them).
    expect(sampleValue(s, 'stowage_attach_duration_seconds_count', { driver: 'local', code: 'OK' })).toBe(N);
    expect(sampleValue(s, 'stowage_mount_duration_seconds_count', { fstype: 'ext4', code: 'OK' })).toBe(N);
    // Every Create took the volume's lock once, none was refused BUSY (the one with a bad option
    // was refused before it asked for the lock).
    expect(sampleValue(s, 'stowage_lock_wait_seconds_count', { operation: 'create' })).toBe(N);
    expect(sampleValue(s, 'stowage_lock_busy_total', { operation: 'mount' })).toBe(0);

    for (let i = 0; i < N; i++) {
      expect((await plugin('Unmount', { Name: `m${i}`, ID: `c${i}` })).body.Err).toBe('');
    }
    s = await samples(d);
    expect(sampleValue(s, 'stowage_requests_total', docker('Unmount', 'OK'))).toBe(N);
    expect(sampleValue(s, 'stowage_mounts', { driver: 'local', state: 'mounted' })).toBe(0);
    expect(sampleValue(s, 'stowage_attachments', { driver: 'local', state: 'attached' })).toBe(0);
  });

  it('times the store by operation, and serves the process metrics under their standard names', async () => {
    const d = await startWithMetrics();
    const before = sampleValue(await samples(d), 'stowage_store_request_duration_seconds_count', {
      store: 'sqlite',
      operation: 'insertVolume',
    });
    expect(before).toBe(0);
    await plugin('Create', { Name: 's1', Opts: {} });
    await plugin('Create', { Name: 's2', Opts: {} });
    const s = await samples(d);
    expect(
      sampleValue(s, 'stowage_store_request_duration_seconds_count', {
        store: 'sqlite',
        operation: 'insertVolume',
      }),
    ).toBe(2);
    expect(s.some((x) => x.name === 'process_cpu_user_seconds_total')).toBe(true);
    expect(s.some((x) => x.name === 'nodejs_eventloop_lag_seconds')).toBe(true);
  });

  it('counts what reconcile did at start by kind', async () => {
    t = await createTestRuntime({
      flags: { metrics: { listen: '127.0.0.1:0' } },
      metrics: new StowageMetrics(),
    });
    // A mount recorded on this host that the kernel no longer has (the host restarted).
    await t.store.insertVolume({
      name: 'gone',
      driver: 'local',
      options: {},
      givenOptions: [],
      removePolicy: 'delete',
      adopted: false,
      createdAt: new Date().toISOString(),
      status: 'ready',
      fields: {},
    });
    await t.store.putMount({
      volume: 'gone',
      host: TEST_HOST,
      mountpoint: join(t.config.mountRoot, 'gone'),
      refs: { c1: 1 },
      state: 'mounted',
      updatedAt: new Date().toISOString(),
    });
    const d = await start(t.runtime);
    const s = await samples(d);
    expect(sampleValue(s, 'stowage_reconcile_actions_total', { kind: 'mount-dropped' })).toBe(1);
    expect(sampleValue(s, 'stowage_reconcile_actions_total', { kind: 'mount-confirmed' })).toBe(0);
  });

  it('answers 404 anywhere but GET /metrics', async () => {
    const d = await startWithMetrics();
    for (const [method, path] of [
      ['GET', '/'],
      ['GET', '/metricsx'],
      ['POST', '/metrics'],
    ] as const) {
      const res = await fetch(`http://${d.metrics?.address}${path}`, { method });
      expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 404`);
      await res.text();
    }
  });

  it('closes the endpoint with the daemon', async () => {
    const d = await startWithMetrics();
    const url = `http://${d.metrics?.address}/metrics`;
    expect((await scrape(url)).status).toBe(200);
    await d.stop();
    daemon = undefined;
    await expect(fetch(url)).rejects.toThrow();
  });
});

describe('metrics.listen off (the default)', () => {
  it('opens no TCP port', async () => {
    const before = await listeningTcpSockets();
    t = await createTestRuntime();
    const d = await start(t.runtime);
    expect(d.metrics).toBeUndefined();
    expect(await listeningTcpSockets()).toEqual(before);
    expect((await plugin('Create', { Name: 'q1', Opts: {} })).body.Err).toBe('');
  });

  it('(the same check sees the port a daemon with metrics opens)', async () => {
    const before = await listeningTcpSockets();
    const d = await startWithMetrics();
    const port = Number(d.metrics?.address.split(':').pop());
    const opened = (await listeningTcpSockets()).filter((s) => !before.includes(s));
    expect(opened).toEqual([`127.0.0.1:${port}`]);
  });
});

describe('a metrics.listen that cannot be served', () => {
  it('stops the start with a message naming metrics.listen, and serves no plugin socket', async () => {
    const blocker = await startWithMetrics(); // holds a port
    const taken = blocker.metrics?.address ?? '';
    const first = t;
    const second = await createTestRuntime({
      flags: { metrics: { listen: taken } },
      metrics: new StowageMetrics(),
    });
    try {
      await expect(
        startDaemon(second.runtime, {
          checkPropagation: async () => ({ ok: true, why: 'host namespace unknown' }),
        }),
      ).rejects.toThrow(`metrics.listen ${taken}: cannot listen there (EADDRINUSE)`);
      const activate = callPlugin(
        join(second.config.socketDir, 'stowage-local.sock'),
        'Plugin.Activate',
        '',
        1000,
      );
      await expect(activate).rejects.toThrow();
    } finally {
      await second.cleanup();
    }
    expect(t).toBe(first);
  });
});
