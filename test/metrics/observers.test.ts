import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StowageError } from '../../src/base/errors.js';
import { timeMethods } from '../../src/base/timed-methods.js';
import { SdkEc2 } from '../../src/cloud/ec2.js';
import { VolumeLocks } from '../../src/core/locks.js';
import { StowageMetrics } from '../../src/metrics/metrics.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import { timedStore } from '../../src/state/timed-store.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { parseSamples, sampleValue } from './scrape.js';

/** Each observer over the fakes: the metric moves by exactly the calls made, with their codes. */
let dir: string;
let store: SqliteStore;
let metrics: StowageMetrics;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-metrics-'));
  store = new SqliteStore(join(dir, 'state.db'));
  metrics = new StowageMetrics();
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function samples() {
  return parseSamples(await metrics.registry.metrics());
}

describe('lock waits', () => {
  it('times every acquisition and counts a BUSY refusal by operation', async () => {
    const locks = new VolumeLocks(store, { host: 'h', waitMs: 20, ttlMs: 60_000, onWait: metrics.lockWait });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const first = locks.withLock('v', 'mount', async () => {
      entered();
      await held;
    });
    await inside;
    await expect(locks.withLock('v', 'remove', async () => undefined)).rejects.toMatchObject({
      code: 'BUSY',
    });
    release();
    await first;
    const s = await samples();
    expect(sampleValue(s, 'stowage_lock_busy_total', { operation: 'remove' })).toBe(1);
    expect(sampleValue(s, 'stowage_lock_busy_total', { operation: 'mount' })).toBe(0);
    expect(sampleValue(s, 'stowage_lock_wait_seconds_count', { operation: 'mount' })).toBe(1);
    expect(sampleValue(s, 'stowage_lock_wait_seconds_count', { operation: 'remove' })).toBe(1);
  });

  it('does not count a store failure while waiting as a wait (the store metrics do)', async () => {
    class Down extends SqliteStore {
      override async tryLock(): Promise<never> {
        throw new StowageError('UNAVAILABLE', 'etcd did not answer');
      }
    }
    const down = timedStore(new Down(join(dir, 'down.db')), metrics.storeCall('sqlite'));
    const locks = new VolumeLocks(down, { host: 'h', waitMs: 20, ttlMs: 60_000, onWait: metrics.lockWait });
    await expect(locks.withLock('v', 'mount', async () => undefined)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    await down.close();
    const s = await samples();
    expect(sampleValue(s, 'stowage_lock_wait_seconds_count', { operation: 'mount' })).toBe(0);
    expect(
      sampleValue(s, 'stowage_store_failures_total', {
        store: 'sqlite',
        operation: 'tryLock',
        code: 'UNAVAILABLE',
      }),
    ).toBe(1);
  });
});

describe('store timing', () => {
  it('counts calls by operation and failures by code, and passes results through unchanged', async () => {
    const timed = timedStore(store, metrics.storeCall('sqlite'));
    expect(timed.kind).toBe('sqlite');
    expect(timed.liveHosts).toBeUndefined(); // an optional method the backend lacks stays absent
    const a = await timed.listVolumeSummaries('h');
    expect(await timed.listVolumeSummaries('h')).toBe(a); // the store's cached array, not a copy
    await expect(timed.updateVolume('missing', { status: 'ready' })).rejects.toThrow();
    const s = await samples();
    const op = (operation: string) => ({ store: 'sqlite', operation });
    expect(sampleValue(s, 'stowage_store_request_duration_seconds_count', op('listVolumeSummaries'))).toBe(2);
    expect(sampleValue(s, 'stowage_store_request_duration_seconds_count', op('updateVolume'))).toBe(1);
    const failed = s.filter((x) => x.name === 'stowage_store_failures_total');
    expect(failed.map((x) => [x.labels.operation, x.value])).toEqual([['updateVolume', 1]]);
  });
});

describe('request timing (batched until the scrape)', () => {
  it('shows every request made before a scrape, also past the pending bound, by code', async () => {
    const done = metrics.requestTimer('docker', 'local', 'Get');
    const labels = { door: 'docker', driver: 'local', operation: 'Get' };
    for (let i = 0; i < 2500; i++) done('OK', 0.0001);
    done('NOT_FOUND', 0.0001);
    let s = await samples();
    expect(sampleValue(s, 'stowage_requests_total', { ...labels, code: 'OK' })).toBe(2500);
    expect(sampleValue(s, 'stowage_requests_total', { ...labels, code: 'NOT_FOUND' })).toBe(1);
    expect(sampleValue(s, 'stowage_request_duration_seconds_count', labels)).toBe(2501);
    expect(sampleValue(s, 'stowage_request_duration_seconds_bucket', { ...labels, le: '0.0005' })).toBe(2501);
    done('OK', 2);
    s = await samples();
    expect(sampleValue(s, 'stowage_requests_total', { ...labels, code: 'OK' })).toBe(2501);
    expect(sampleValue(s, 'stowage_request_duration_seconds_bucket', { ...labels, le: '1' })).toBe(2501);
    expect(sampleValue(s, 'stowage_request_duration_seconds_bucket', { ...labels, le: '2.5' })).toBe(2502);
  });
});

describe('timeMethods', () => {
  class Thing {
    private n = 0;
    async bump(): Promise<number> {
      return ++this.n;
    }
    async fail(): Promise<never> {
      throw new StowageError('TIMEOUT', 'too slow');
    }
    name(): string {
      return `thing ${this.n}`;
    }
  }

  it('reports the named async methods only, with their error, and runs them on the target', async () => {
    const seen: [string, unknown][] = [];
    const thing = timeMethods(new Thing(), (m, _s, err) => seen.push([m, err]), new Set(['bump', 'fail']));
    expect(await thing.bump()).toBe(1);
    expect(await thing.bump()).toBe(2);
    expect(thing.name()).toBe('thing 2');
    await expect(thing.fail()).rejects.toThrow('too slow');
    expect(seen.map(([m, err]) => [m, (err as StowageError | undefined)?.code])).toEqual([
      ['bump', undefined],
      ['bump', undefined],
      ['fail', 'TIMEOUT'],
    ]);
  });
});

describe('AWS calls (the SDK middleware)', () => {
  let ec2: FakeEc2;
  beforeEach(async () => {
    ec2 = await FakeEc2.start();
  });
  afterEach(async () => {
    await ec2.stop();
  });

  it('counts each call by service, operation and AWS error code', async () => {
    const client = new SdkEc2({
      region: ec2.region,
      endpoint: ec2.url,
      maxAttempts: 1,
      requestTimeoutMs: 5000,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      observe: metrics.cloudCall,
    });
    const made = await client.createVolume({
      clientToken: 't1',
      availabilityZone: `${ec2.region}a`,
      type: 'gp3',
      sizeGiB: 1,
      tags: {},
    });
    expect((await client.describeVolume(made.id))?.id).toBe(made.id);
    expect(await client.describeVolume('vol-0123456789abcdef0')).toBeUndefined(); // NotFound, mapped
    const s = await samples();
    const call = (operation: string, code: string) => ({ service: 'ec2', operation, code });
    expect(sampleValue(s, 'stowage_cloud_requests_total', call('CreateVolume', 'OK'))).toBe(1);
    expect(sampleValue(s, 'stowage_cloud_requests_total', call('DescribeVolumes', 'OK'))).toBe(1);
    expect(
      sampleValue(s, 'stowage_cloud_requests_total', call('DescribeVolumes', 'InvalidVolume.NotFound')),
    ).toBe(1);
    expect(
      sampleValue(s, 'stowage_cloud_request_duration_seconds_count', {
        service: 'ec2',
        operation: 'DescribeVolumes',
      }),
    ).toBe(2);
  });
});
