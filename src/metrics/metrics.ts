import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { StowageError } from '../base/errors.js';
import type { CloudCall } from '../cloud/client-options.js';
import type { ReconcileActionKind } from '../core/volume-manager.js';
import type { StateStore } from '../state/store.js';
import { Batched } from './batched.js';
import { BUCKETS } from './buckets.js';
import {
  RequestCounter,
  RequestHistogram,
  type StoredRequestReader,
  storedRequestSeries,
} from './stored-requests.js';

/**
 * Where a request came in and is timed live: the Docker plugin socket. The flexvolume executable
 * and the CLI record theirs in the store, read at scrape (watchHost; docs/metrics.md).
 */
export type Door = 'docker';

/** Ends one request's timing with its result: `OK` or the StowageError code it failed with. */
export type RequestDone = (code: string, seconds: number) => void;

/**
 * Every metric stowage serves, in one registry of its own (not prom-client's global one, so two
 * runtimes in one test process do not share counters). The names follow Prometheus' conventions:
 * base units (seconds), `_total` on counters, small fixed label sets, never a volume's name.
 * The other parts of stowage never see prom-client: they call the observer functions below, which
 * the runtime hands them (docs/metrics.md lists what each metric means).
 */
export class StowageMetrics {
  readonly registry = new Registry();

  /** The hot path's observations, handed to prom-client at each scrape (see Batched). */
  private readonly batched = new Batched();
  private readonly flushBatched = () => this.batched.flush();

  /** The flexvolume and CLI requests recorded in the store: set by watchHost, read at each scrape. */
  private readStoredRequests: StoredRequestReader | undefined;

  private readonly requests = new RequestCounter(
    {
      name: 'stowage_requests_total',
      help: 'Requests answered, by door, driver, operation and result code (OK or the error code).',
      labelNames: ['door', 'driver', 'operation', 'code'] as const,
      registers: [this.registry],
      collect: this.flushBatched,
    },
    () => this.readStoredRequests,
  );

  private readonly requestSeconds = new RequestHistogram(
    {
      name: 'stowage_request_duration_seconds',
      help: 'Time to answer a request, by door, driver and operation.',
      labelNames: ['door', 'driver', 'operation'] as const,
      buckets: [...BUCKETS.request],
      registers: [this.registry],
      collect: this.flushBatched,
    },
    () => this.readStoredRequests,
  );

  private readonly cloudRequests = new Counter({
    name: 'stowage_cloud_requests_total',
    help: 'AWS API calls (retries included), by service, operation and result code (OK or the AWS error code).',
    labelNames: ['service', 'operation', 'code'] as const,
    registers: [this.registry],
  });

  private readonly cloudSeconds = new Histogram({
    name: 'stowage_cloud_request_duration_seconds',
    help: 'Time of an AWS API call, retries included, by service and operation.',
    labelNames: ['service', 'operation'] as const,
    buckets: [...BUCKETS.cloud],
    registers: [this.registry],
  });

  private readonly attachSeconds = new Histogram({
    name: 'stowage_attach_duration_seconds',
    help: "Time of a driver's attach (a loop device set up, an EBS volume attached and waited for), by driver and result code.",
    labelNames: ['driver', 'code'] as const,
    buckets: [...BUCKETS.attach],
    registers: [this.registry],
  });

  private readonly deviceWaitSeconds = new Histogram({
    name: 'stowage_device_wait_seconds',
    help: "Time waited for an attachment's block device to show up on this host, by driver and result code.",
    labelNames: ['driver', 'code'] as const,
    buckets: [...BUCKETS.attach],
    registers: [this.registry],
  });

  private readonly mountSeconds = new Histogram({
    name: 'stowage_mount_duration_seconds',
    help: 'Time of one mount command, by filesystem type (none for a bind mount) and result code.',
    labelNames: ['fstype', 'code'] as const,
    buckets: [...BUCKETS.attach],
    registers: [this.registry],
  });

  private readonly lockWaitSeconds = new Histogram({
    name: 'stowage_lock_wait_seconds',
    help: "Time an operation waited for a volume's lock (until it got it or was refused BUSY), by operation.",
    labelNames: ['operation'] as const,
    buckets: [...BUCKETS.lock],
    registers: [this.registry],
  });

  private readonly lockBusy = new Counter({
    name: 'stowage_lock_busy_total',
    help: "Operations refused BUSY because another one held the volume's lock past the wait, by operation.",
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  private readonly reconcileActions = new Counter({
    name: 'stowage_reconcile_actions_total',
    help: 'Records reconcile brought in line with the kernel, by kind of action.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  private readonly storeSeconds = new Histogram({
    name: 'stowage_store_request_duration_seconds',
    help: 'Time of a metadata store call, by store (sqlite, etcd) and operation.',
    labelNames: ['store', 'operation'] as const,
    buckets: [...BUCKETS.store],
    registers: [this.registry],
    collect: this.flushBatched,
  });

  private readonly storeFailures = new Counter({
    name: 'stowage_store_failures_total',
    help: 'Metadata store calls that failed, by store, operation and error code.',
    labelNames: ['store', 'operation', 'code'] as const,
    registers: [this.registry],
  });

  constructor() {
    // The standard process_* and nodejs_* names, unprefixed: the dashboards and alerts written
    // for Node services expect them, and the scrape's job label already says it is stowage.
    collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Prepares the timing of one kind of request (one door, driver and operation), so that a
   * request itself costs one counter increment and one histogram observation.
   */
  requestTimer(door: Door, driver: string, operation: string): RequestDone {
    const observe = this.batched.histogram(this.requestSeconds, { door, driver, operation });
    const counters = new Map<string, () => void>();
    return (code, seconds) => {
      let count = counters.get(code);
      if (!count) {
        count = this.batched.counter(this.requests, { door, driver, operation, code });
        counters.set(code, count);
      }
      count();
      observe(seconds);
    };
  }

  cloudCall = (call: CloudCall): void => {
    this.cloudRequests.labels(call.service, call.operation, call.code).inc();
    this.cloudSeconds.labels(call.service, call.operation).observe(call.seconds);
  };

  /** A driver's attach (`attach`) or device wait (`localDevice`), as timeMethods reports it. */
  driverCall(driver: string): (method: string, seconds: number, error: unknown) => void {
    return (method, seconds, error) => {
      const histogram = method === 'attach' ? this.attachSeconds : this.deviceWaitSeconds;
      histogram.labels(driver, codeOf(error)).observe(seconds);
    };
  }

  /** Mounter.mount(source, target, {fsType}) calls, as timeMethods reports them. */
  mountCall = (_method: string, seconds: number, error: unknown, args: readonly unknown[]): void => {
    const fsType = (args[2] as { fsType?: string } | undefined)?.fsType;
    this.mountSeconds.labels(fsType ?? 'none', codeOf(error)).observe(seconds);
  };

  lockWait = (operation: string, seconds: number, busy: boolean): void => {
    this.lockWaitSeconds.labels(operation).observe(seconds);
    if (busy) this.lockBusy.labels(operation).inc();
  };

  reconcileAction = (kind: ReconcileActionKind): void => {
    this.reconcileActions.labels(kind).inc();
  };

  /** Store calls of `store` (its kind), as timeMethods reports them. */
  storeCall(store: string): (operation: string, seconds: number, error: unknown) => void {
    // The Docker Get and List paths make a store call or two each: resolve the label set once
    // per operation, not on every call.
    const byOperation = new Map<string, (seconds: number) => void>();
    return (operation, seconds, error) => {
      let observe = byOperation.get(operation);
      if (!observe) {
        observe = this.batched.histogram(this.storeSeconds, { store, operation });
        byOperation.set(operation, observe);
      }
      observe(seconds);
      if (error !== undefined) this.storeFailures.labels(store, operation, codeOf(error)).inc();
    };
  }

  /**
   * What is read from the store at scrape time, this host's only: the mounts and attachments
   * gauges by driver and state, and the requests the flexvolume executable and the CLI recorded
   * (door `flexvolume` and `cli` in the request families). One read serves both gauges of a
   * scrape, one both request families; a failed read leaves its series out of that scrape (the
   * store's failure counter shows why) rather than failing the whole scrape.
   */
  watchHost(store: HostRecords, host: string, onError: (err: Error) => void): void {
    const read = sharedRead(() => countOnHost(store, host), onError);
    this.readStoredRequests = sharedRead(
      async () => storedRequestSeries(await store.requestTallies(host), BUCKETS.request),
      onError,
    );
    const gauge = (name: string, help: string, pick: (c: HostCounts) => Map<string, number>) =>
      new Gauge({
        name,
        help,
        labelNames: ['driver', 'state'] as const,
        registers: [this.registry],
        async collect() {
          const counts = await read();
          this.reset();
          for (const [key, n] of counts ? pick(counts) : []) {
            const [driver, state] = key.split('\0') as [string, string];
            this.labels(driver, state).set(n);
          }
        },
      });
    gauge(
      'stowage_mounts',
      "Volumes mounted on this host (the store's records), by driver and state.",
      (c) => c.mounts,
    );
    gauge(
      'stowage_attachments',
      "Volumes attached to this host (the store's records), by driver and state.",
      (c) => c.attachments,
    );
  }
}

/** The store's reads the scrape makes. */
export type HostRecords = Pick<
  StateStore,
  'listVolumeSummaries' | 'listMountsByHost' | 'listAttachmentsByHost' | 'requestTallies'
>;

interface HostCounts {
  /** driver \0 state -> records */
  mounts: Map<string, number>;
  attachments: Map<string, number>;
}

/**
 * `load`, shared by the callers that ask while it runs (the metrics of one scrape) and done again
 * by the next; a failure goes to `onError` and reads as undefined.
 */
function sharedRead<T>(load: () => Promise<T>, onError: (err: Error) => void): () => Promise<T | undefined> {
  let reading: Promise<T | undefined> | undefined;
  return () => {
    reading ??= load()
      .catch((err: Error) => {
        onError(err);
        return undefined;
      })
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };
}

async function countOnHost(store: HostRecords, host: string): Promise<HostCounts> {
  const [volumes, mounts, attachments] = await Promise.all([
    store.listVolumeSummaries(host),
    store.listMountsByHost(host),
    store.listAttachmentsByHost(host),
  ]);
  const driverOf = new Map(volumes.map((v) => [v.name, v.driver]));
  const count = (records: { volume: string; state: string }[]) => {
    const out = new Map<string, number>();
    for (const r of records) {
      const key = `${driverOf.get(r.volume) ?? 'unknown'}\0${r.state}`;
      out.set(key, (out.get(key) ?? 0) + 1);
    }
    return out;
  };
  return { mounts: count(mounts), attachments: count(attachments) };
}

/** `OK`, or the StowageError code an error maps to (INTERNAL for anything unexpected). */
function codeOf(error: unknown): string {
  if (error === undefined) return 'OK';
  return error instanceof StowageError ? error.code : 'INTERNAL';
}
