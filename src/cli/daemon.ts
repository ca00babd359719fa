import { isAbsolute, relative } from 'node:path';
import { isStowageError, StowageError } from '../base/errors.js';
import type { Config } from '../config.js';
import { closePluginSockets, type PluginSocket, servePluginSockets } from '../docker/server.js';
import type { MetricsServer } from '../metrics/server.js';
import {
  checkMountPropagation,
  type PropagationCheckOptions,
  type PropagationVerdict,
} from '../mount/propagation.js';
import { openRuntime, type Runtime } from '../runtime.js';

/**
 * How long registering this host and reconciling may hold up the sockets at start. Docker enables
 * a managed plugin only if its socket appears quickly; whatever takes longer (a store that is
 * down, a slow cloud API, a dead NFS server's mount to tear down) goes on in the background.
 */
export const START_BUDGET_MS = 5000;

export interface DaemonOptions {
  startBudgetMs?: number;
  /** The mount propagation check (a test gives the verdict); see src/mount/propagation.ts. */
  checkPropagation?: (path: string, opts: PropagationCheckOptions) => Promise<PropagationVerdict>;
  /** How long stop() waits for a registering/reconciling attempt in progress before closing the store. */
  stopGraceMs?: number;
}

export interface RunningDaemon {
  sockets: PluginSocket[];
  /** The /metrics endpoint, when metrics.listen is set. */
  metrics?: MetricsServer;
  startup: StartupTasks;
  /** The driver checks started at start (they only log). */
  doctor: Promise<void>;
  /** Removes the sockets (requests in flight finish), stops the startup tasks, closes the store. */
  stop(): Promise<void>;
}

/**
 * The daemon's runtime: with etcd's read cache, and with metrics fed by the store, locks, drivers
 * and AWS clients when metrics.listen is set. prom-client is loaded only then (the CLI and flexvolume never load it).
 */
export async function openDaemonRuntime(config: Config): Promise<Runtime> {
  // etcd: Get, Path and List from a watch-fed copy (src/state/etcd-cache.ts).
  if (!config.metrics.listen) return openRuntime(config, { readCache: true });
  const { StowageMetrics } = await import('../metrics/metrics.js');
  return openRuntime(config, { readCache: true, metrics: new StowageMetrics() });
}

/**
 * `stowage daemon`: check that its mounts reach dockerd, register this host, reconcile records with
 * the kernel, serve one socket per driver until SIGTERM/SIGINT. Shutdown removes the sockets and
 * keeps every mount: containers keep running and the next start finds the same state.
 */
export async function runDaemon(rt: Runtime, opts: DaemonOptions = {}): Promise<void> {
  const { log } = rt;
  // Handlers first: a socket answers (and a supervisor may send SIGTERM) while the other drivers'
  // sockets are still being set up, and without a handler SIGTERM would kill the process outright.
  let signalled: string | undefined;
  let wake: (() => void) | undefined;
  const onSignal = (signal: string) => {
    signalled ??= signal;
    wake?.();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  const daemon = await startDaemon(rt, opts);
  if (signalled === undefined) {
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
  }
  log.info({ signal: signalled }, 'shutting down; mounts are kept');
  await daemon.stop();
  log.info('stopped');
  log.flush();
}

/**
 * Everything up to serving the sockets. Only a wrong setup stops the start: mounts that would be
 * invisible to dockerd (propagation), a configuration error seen while registering or
 * reconciling, a socket that cannot be served. An unreachable backend or store never does.
 */
export async function startDaemon(rt: Runtime, opts: DaemonOptions = {}): Promise<RunningDaemon> {
  const { config, log, manager } = rt;
  // The fix binds the data directory when the volumes are in it (the default): one bind for all.
  const rel = relative(config.dataDir, config.mountRoot);
  const inData = rel === '' || !(rel === '..' || rel.startsWith('../') || isAbsolute(rel));
  const verdict = await (opts.checkPropagation ?? checkMountPropagation)(config.mountRoot, {
    bindDir: inData ? config.dataDir : config.mountRoot,
  });
  if (!verdict.ok) throw verdict.error;
  if (verdict.why === 'shared') {
    if (verdict.warning) log.warn({ mountRoot: config.mountRoot }, verdict.warning);
    log.info(
      {
        mountRoot: config.mountRoot,
        mountPoint: verdict.mount.mountPoint,
        peerGroup: verdict.mount.peerGroup,
      },
      'own mount namespace; the volumes directory is on a shared mount',
    );
  }

  // Driver checks (e.g. is the NFS server up) warn and never hold up or stop the daemon: the other
  // drivers must be served, and the check runs again on every `stowage doctor`. They start now, in
  // the background, and take no part in what follows.
  const doctor = runDriverChecks(rt);

  // Before anything else starts: a metrics.listen that cannot be served stops the start cleanly.
  const metrics = await serveDaemonMetrics(rt);
  const startup = new StartupTasks(rt);
  let sockets: PluginSocket[];
  try {
    await startup.firstTry(opts.startBudgetMs ?? START_BUDGET_MS);
    sockets = await servePluginSockets(manager, log, {
      socketDir: config.socketDir,
      prefix: config.socketPrefix,
      drivers: config.drivers,
      ...(rt.metrics ? { timer: dockerRequestTimer(rt.metrics) } : {}),
    });
  } catch (err) {
    await startup.stop(opts.stopGraceMs ?? 20_000);
    await metrics?.close();
    throw err;
  }
  log.info(
    {
      drivers: config.drivers,
      state: config.state,
      mountRoot: config.mountRoot,
      reconciled: startup.isDone(),
    },
    'stowage daemon ready',
  );
  return {
    sockets,
    ...(metrics ? { metrics } : {}),
    startup,
    doctor,
    stop: async () => {
      await closePluginSockets(sockets, log);
      await startup.stop(opts.stopGraceMs ?? 20_000);
      await metrics?.close();
      await rt.close();
    },
  };
}

/** Serves /metrics when metrics.listen is set; the runtime must have been opened with metrics. */
async function serveDaemonMetrics(rt: Runtime): Promise<MetricsServer | undefined> {
  const { listen } = rt.config.metrics;
  if (!listen) return undefined;
  if (!rt.metrics) {
    throw new StowageError(
      'INTERNAL',
      'metrics.listen is set but the runtime was opened without metrics (open it with openDaemonRuntime)',
    );
  }
  const { serveMetrics } = await import('../metrics/server.js');
  // The daemon's runtime logs through pino (openRuntime made its logger), the type the metrics
  // server still names; the runtime itself only promises the Logger of src/base/logger.ts.
  const server = await serveMetrics(rt.metrics.registry, listen, rt.log);
  rt.log.info({ metrics: `http://${server.address}/metrics` }, 'serving Prometheus metrics');
  return server;
}

/** The Docker door's request timing: one timer per driver and operation. */
function dockerRequestTimer(metrics: NonNullable<Runtime['metrics']>) {
  return (driver: string) => (operation: string) => metrics.requestTimer('docker', driver, operation);
}

/** Each driver's doctor checks, all at once; failures are logged as warnings. Never rejects. */
async function runDriverChecks(rt: Runtime): Promise<void> {
  const { log, manager } = rt;
  await Promise.all(
    manager.drivers().map(async (driver) => {
      const checks = await Promise.resolve()
        .then(() => driver.doctor?.())
        .catch((err: Error) => [{ name: driver.name, ok: false, detail: err.message }]);
      for (const check of checks ?? []) {
        if (!check.ok) log.warn({ driver: driver.name, check: check.name }, check.detail);
      }
    }),
  );
}

/**
 * Registering this host (with a lease in a shared store) and reconciling need the store, and
 * reconciling may wait on backends (unmounting from a dead NFS server). The first attempt gets a
 * budget; after it the daemon serves anyway and the attempt goes on in the background, then is
 * retried with backoff until it succeeds. Requests served meanwhile are safe: reconcile takes each
 * volume's lock and decides from the records as they are under it (see VolumeManager.reconcile).
 */
export class StartupTasks {
  private registered = false;
  private reconciled = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The attempt in progress (the first one may outlive its budget). */
  private running: Promise<void> | undefined;
  private markDone!: () => void;
  /** Resolves once the host is registered and reconciled. */
  readonly done = new Promise<void>((resolve) => (this.markDone = resolve));

  constructor(private readonly rt: Runtime) {}

  isDone(): boolean {
    return this.registered && this.reconciled;
  }

  /**
   * Runs the first attempt and waits for it at most `budgetMs`. A configuration error within the
   * budget is thrown (a wrong setting does not fix itself, and a daemon that exits says so
   * plainly); any other failure, or running out of budget, leaves it to the background.
   */
  async firstTry(budgetMs: number): Promise<void> {
    const first = this.attempt().then(
      () => undefined,
      (err: unknown) => err,
    );
    let timer: NodeJS.Timeout | undefined;
    const late = Symbol('late');
    const outcome = await Promise.race([
      first,
      new Promise<typeof late>((resolve) => {
        timer = setTimeout(() => resolve(late), budgetMs);
      }),
    ]);
    clearTimeout(timer);
    if (outcome === late) {
      this.rt.log.warn(
        { budgetMs, registered: this.registered },
        'registering this host and reconciling take longer than the start budget; serving the sockets meanwhile, they go on in the background',
      );
      this.running = first.then((err) => this.settle(err, 1000));
      return;
    }
    if (isStowageError(outcome, 'CONFIG')) throw outcome;
    this.settle(outcome, 1000);
  }

  /** No more attempts; waits up to `graceMs` for one in progress (it may be tearing down a mount). */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.running) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }

  /** After an attempt: done, or logged and tried again after `delayMs`. */
  private settle(err: unknown, delayMs: number): void {
    if (err === undefined) {
      this.markDone();
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    if (isStowageError(err) && err.retryable) {
      this.rt.log.warn(
        { err: message, registered: this.registered, retryInMs: delayMs },
        'registering or reconciling could not finish (store or backend unavailable?); retrying',
      );
    } else {
      this.rt.log.error(
        { err: message, registered: this.registered, retryInMs: delayMs },
        'registering or reconciling failed; retrying',
      );
    }
    this.retry(delayMs);
  }

  private retry(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      if (this.stopped) return;
      this.running = this.attempt().then(
        () => this.settle(undefined, 0),
        (err: unknown) => this.settle(err, Math.min(delayMs * 2, 30_000)),
      );
    }, delayMs);
  }

  /** Registers (once) and reconciles (once); throws what stopped it. */
  private async attempt(): Promise<void> {
    const { config, log, manager, hosts } = this.rt;
    if (!this.registered) {
      await hosts.register({ pid: process.pid }, { leaseTtlSeconds: config.etcd.leaseTtlSeconds });
      this.registered = true;
    }
    if (!this.reconciled) {
      const report = await manager.reconcile();
      this.reconciled = true;
      log.info({ actions: report.actions.length }, 'reconciled state with this host');
    }
  }
}
