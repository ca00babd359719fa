import { describe, expect, it } from 'vitest';
import { bucketBound, REQUEST_BUCKETS, requestBucket } from '../../src/base/request-buckets.js';
import { type HostRecords, StowageMetrics } from '../../src/metrics/metrics.js';
import { storedRequestSeries } from '../../src/metrics/stored-requests.js';
import type { RequestTally } from '../../src/state/store.js';
import { parseSamples, sampleValue } from './scrape.js';

/**
 * The requests the flexvolume executable and the CLI record in the store, merged at scrape into
 * the same families as the Docker door's live ones: fake store rows in, exact exposition out.
 */

/** A store that answers the scrape's reads from fixed rows, and counts the tally reads. */
class FakeHostRecords implements HostRecords {
  tallyReads = 0;
  failWith: Error | undefined;
  constructor(public tallies: RequestTally[]) {}
  async listVolumeSummaries() {
    return [];
  }
  async listMountsByHost() {
    return [];
  }
  async listAttachmentsByHost() {
    return [];
  }
  async requestTallies(host: string) {
    this.tallyReads++;
    if (this.failWith) throw this.failWith;
    return host === 'h1' ? this.tallies : [];
  }
}

const flexMount = { door: 'flexvolume', driver: 'local', operation: 'mount' };

function tally(over: Partial<RequestTally>): RequestTally {
  return { ...flexMount, code: 'OK', le: '0.25', count: 1, seconds: 0.2, ...over };
}

describe('request buckets', () => {
  it('sorts a duration into the smallest bound it does not exceed, past the last into +Inf', () => {
    expect(requestBucket(0)).toBe('0.0005');
    expect(requestBucket(0.0005)).toBe('0.0005');
    expect(requestBucket(0.00051)).toBe('0.001');
    expect(requestBucket(0.3)).toBe('0.5');
    expect(requestBucket(120)).toBe('120');
    expect(requestBucket(120.5)).toBe('+Inf');
    expect(REQUEST_BUCKETS.map((b) => bucketBound(requestBucket(b)))).toEqual([...REQUEST_BUCKETS]);
    expect(bucketBound('+Inf')).toBe(Number.POSITIVE_INFINITY);
    expect(bucketBound('')).toBeNaN();
    expect(bucketBound('fast')).toBeNaN();
  });
});

describe('storedRequestSeries', () => {
  const bounds = [0.1, 1, 10];

  it('adds the tallies up: counts by code, cumulative buckets, count and sum by series', () => {
    const series = storedRequestSeries(
      [
        tally({ le: '0.1', count: 3, seconds: 0.15 }),
        tally({ le: '1', count: 2, seconds: 1.25 }),
        tally({ code: 'BUSY', le: '10', count: 1, seconds: 9.5 }),
        tally({ le: '+Inf', count: 1, seconds: 30 }),
        tally({ door: 'cli', driver: '', operation: 'volumes rm', le: '1', count: 4, seconds: 2 }),
      ],
      bounds,
    );
    expect(series.counts).toEqual([
      { labels: { door: 'cli', driver: '', operation: 'volumes rm', code: 'OK' }, value: 4 },
      { labels: { ...flexMount, code: 'BUSY' }, value: 1 },
      { labels: { ...flexMount, code: 'OK' }, value: 6 },
    ]);
    expect(series.durations).toEqual([
      {
        labels: { door: 'cli', driver: '', operation: 'volumes rm' },
        buckets: [0, 4, 4],
        count: 4,
        sum: 2,
      },
      { labels: flexMount, buckets: [3, 5, 6], count: 7, sum: 40.9 },
    ]);
  });

  it('counts a tally of a bound no longer used in the buckets above it, an unreadable one in +Inf only', () => {
    const series = storedRequestSeries(
      [tally({ le: '0.05', count: 2, seconds: 0.06 }), tally({ le: 'soon', count: 1, seconds: 3 })],
      bounds,
    );
    expect(series.durations).toEqual([{ labels: flexMount, buckets: [2, 2, 2], count: 3, sum: 3.06 }]);
  });
});

describe('the request families with the stored doors merged in', () => {
  function metricsOver(store: FakeHostRecords) {
    const metrics = new StowageMetrics();
    const errors: string[] = [];
    metrics.watchHost(store, 'h1', (err) => errors.push(err.message));
    return { metrics, errors };
  }

  it("shows the Docker door's live series and this host's stored ones in the same families", async () => {
    const store = new FakeHostRecords([
      tally({ le: '0.25', count: 2, seconds: 0.375 }),
      tally({ code: 'INVALID_ARGUMENT', le: '0.1', count: 1, seconds: 0.0625 }),
    ]);
    const { metrics } = metricsOver(store);
    metrics.requestTimer('docker', 'local', 'Mount')('OK', 0.003);

    expect(await metrics.registry.getSingleMetricAsString('stowage_requests_total')).toBe(
      [
        '# HELP stowage_requests_total Requests answered, by door, driver, operation and result code (OK or the error code).',
        '# TYPE stowage_requests_total counter',
        'stowage_requests_total{door="docker",driver="local",operation="Mount",code="OK"} 1',
        'stowage_requests_total{door="flexvolume",driver="local",operation="mount",code="INVALID_ARGUMENT"} 1',
        'stowage_requests_total{door="flexvolume",driver="local",operation="mount",code="OK"} 2',
      ].join('\n'),
    );
    const cumulative = [0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3];
    const dockerCumulative = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    const histogram = (labels: string, counts: number[], sum: number) => [
      ...REQUEST_BUCKETS.map(
        (le, i) => `stowage_request_duration_seconds_bucket{le="${le}",${labels}} ${counts[i]}`,
      ),
      `stowage_request_duration_seconds_bucket{le="+Inf",${labels}} ${counts.at(-1)}`,
      `stowage_request_duration_seconds_sum{${labels}} ${sum}`,
      `stowage_request_duration_seconds_count{${labels}} ${counts.at(-1)}`,
    ];
    expect(await metrics.registry.getSingleMetricAsString('stowage_request_duration_seconds')).toBe(
      [
        '# HELP stowage_request_duration_seconds Time to answer a request, by door, driver and operation.',
        '# TYPE stowage_request_duration_seconds histogram',
        ...histogram('door="docker",driver="local",operation="Mount"', dockerCumulative, 0.003),
        ...histogram('door="flexvolume",driver="local",operation="mount"', cumulative, 0.4375),
      ].join('\n'),
    );
  });

  it('reads the store once per scrape for both families, and again at the next scrape', async () => {
    const store = new FakeHostRecords([tally({})]);
    const { metrics } = metricsOver(store);
    const first = parseSamples(await metrics.registry.metrics());
    expect(store.tallyReads).toBe(1);
    expect(sampleValue(first, 'stowage_requests_total', { ...flexMount, code: 'OK' })).toBe(1);
    store.tallies = [tally({ count: 5, seconds: 1 })];
    const second = parseSamples(await metrics.registry.metrics());
    expect(store.tallyReads).toBe(2);
    // Totals as stored, not added to what the last scrape showed.
    expect(sampleValue(second, 'stowage_requests_total', { ...flexMount, code: 'OK' })).toBe(5);
    expect(sampleValue(second, 'stowage_request_duration_seconds_count', flexMount)).toBe(5);
    expect(sampleValue(second, 'stowage_request_duration_seconds_sum', flexMount)).toBe(1);
  });

  it('leaves the stored series out of a scrape whose store read fails, and keeps serving the rest', async () => {
    const store = new FakeHostRecords([tally({})]);
    store.failWith = new Error('etcd: deadline exceeded');
    const { metrics, errors } = metricsOver(store);
    metrics.requestTimer('docker', 'local', 'Get')('OK', 0.0001);
    const samples = parseSamples(await metrics.registry.metrics());
    expect(errors).toEqual(['etcd: deadline exceeded']);
    expect(samples.filter((s) => s.labels.door === 'flexvolume')).toEqual([]);
    expect(
      sampleValue(samples, 'stowage_requests_total', {
        door: 'docker',
        driver: 'local',
        operation: 'Get',
        code: 'OK',
      }),
    ).toBe(1);
  });

  it('shows no stored series before watchHost (a runtime without a store to read)', async () => {
    const metrics = new StowageMetrics();
    metrics.requestTimer('docker', 'local', 'List')('OK', 0.0001);
    const samples = parseSamples(await metrics.registry.metrics());
    expect(samples.filter((s) => s.name.startsWith('stowage_request') && s.labels.door !== 'docker')).toEqual(
      [],
    );
  });
});
