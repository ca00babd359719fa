import {
  Counter,
  type CounterConfiguration,
  Histogram,
  type HistogramConfiguration,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';
import { bucketBound } from '../base/request-buckets.js';
import type { RequestTally } from '../state/store.js';

export type RequestLabel = 'door' | 'driver' | 'operation' | 'code';
type SeriesLabel = Exclude<RequestLabel, 'code'>;

/**
 * The requests the flexvolume executable and the CLI recorded in the store (RequestTally rows),
 * as the series of stowage_requests_total and stowage_request_duration_seconds: the stored numbers
 * are totals since the store was made, which is what a Prometheus counter or histogram shows.
 */
export interface StoredRequestSeries {
  counts: { labels: Record<RequestLabel, string>; value: number }[];
  durations: {
    labels: Record<SeriesLabel, string>;
    /** Cumulative: how many took at most each of `bounds` seconds. */
    buckets: number[];
    count: number;
    sum: number;
  }[];
}

/**
 * Adds up the tallies: the counter by door, driver, operation and code; the histogram by door,
 * driver and operation (no code, like the Docker door's), each request in every bucket at or
 * above its own. A tally recorded under a bound the daemon no longer uses counts in the buckets
 * above it, and one under no bound of `bounds` in +Inf (the count) only: never in a bucket too low.
 */
export function storedRequestSeries(
  tallies: readonly RequestTally[],
  bounds: readonly number[],
): StoredRequestSeries {
  const counts = new Map<string, StoredRequestSeries['counts'][number]>();
  const durations = new Map<string, StoredRequestSeries['durations'][number]>();
  for (const t of tallies) {
    const labels = { door: t.door, driver: t.driver, operation: t.operation };
    const seriesKey = JSON.stringify([t.door, t.driver, t.operation]);
    const countKey = JSON.stringify([t.door, t.driver, t.operation, t.code]);
    const c = counts.get(countKey) ?? { labels: { ...labels, code: t.code }, value: 0 };
    c.value += t.count;
    counts.set(countKey, c);
    const d = durations.get(seriesKey) ?? { labels, buckets: bounds.map(() => 0), count: 0, sum: 0 };
    const le = bucketBound(t.le);
    bounds.forEach((bound, i) => {
      if (le <= bound) d.buckets[i]! += t.count;
    });
    d.count += t.count;
    d.sum += t.seconds;
    durations.set(seriesKey, d);
  }
  // In label order, so that a page reads the same from one scrape to the next.
  const byKey = <V>(m: Map<string, V>) =>
    [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
  return { counts: byKey(counts), durations: byKey(durations) };
}

/** Reads the stored series at scrape time; undefined when the store could not be read. */
export type StoredRequestReader = () => Promise<StoredRequestSeries | undefined>;

/**
 * stowage_requests_total: the Docker door's live counts (the counter's own), followed by the
 * stored doors' totals read at each scrape. prom-client renders a counter from `get()`.
 */
export class RequestCounter extends Counter<RequestLabel> {
  constructor(
    config: CounterConfiguration<RequestLabel>,
    private readonly stored: () => StoredRequestReader | undefined,
  ) {
    super(config);
  }

  override async get(): Promise<MetricObjectWithValues<MetricValue<RequestLabel>>> {
    // Asked for before the first await: the histogram's get, started in the same scrape, then
    // shares this read (see StowageMetrics.watchHost).
    const reading = this.stored()?.();
    const own = await super.get();
    const series = await reading;
    if (!series) return own;
    return { ...own, values: [...own.values, ...series.counts] };
  }
}

/** One line of a histogram as prom-client's registry renders it (its own shape for histograms). */
interface HistogramLine {
  value: number;
  metricName: string;
  labels: Record<string, string | number>;
  sharedLabels: Record<string, string>;
}

/**
 * stowage_request_duration_seconds: the Docker door's live observations, followed by the stored
 * doors' totals. prom-client's registry renders a histogram from its `getForPromString()` (which
 * its `get()` also builds on), a method its type declarations leave out; the exposition test in
 * test/metrics/stored-requests.test.ts pins the text, so a prom-client that renders otherwise fails it.
 */
export class RequestHistogram extends Histogram<SeriesLabel> {
  private readonly family: string;
  private readonly bounds: readonly number[];

  constructor(
    config: HistogramConfiguration<SeriesLabel> & { buckets: number[] },
    private readonly stored: () => StoredRequestReader | undefined,
  ) {
    super(config);
    this.family = config.name;
    this.bounds = [...config.buckets];
  }

  async getForPromString(): Promise<MetricObjectWithValues<HistogramLine>> {
    const reading = this.stored()?.();
    const base = Histogram.prototype as unknown as {
      getForPromString(this: Histogram<SeriesLabel>): Promise<MetricObjectWithValues<HistogramLine>>;
    };
    const own = await base.getForPromString.call(this);
    const series = await reading;
    if (!series) return own;
    const lines = series.durations.flatMap((d): HistogramLine[] => [
      ...this.bounds.map((le, i) => this.line('_bucket', { le }, d.labels, d.buckets[i]!)),
      this.line('_bucket', { le: '+Inf' }, d.labels, d.count),
      this.line('_sum', {}, d.labels, d.sum),
      this.line('_count', {}, d.labels, d.count),
    ]);
    return { ...own, values: [...own.values, ...lines] };
  }

  private line(
    suffix: string,
    labels: HistogramLine['labels'],
    shared: Record<SeriesLabel, string>,
    value: number,
  ): HistogramLine {
    return { value, metricName: `${this.family}${suffix}`, labels, sharedLabels: { ...shared } };
  }
}
