import { isStowageError } from '../core/errors.js';
import { registerHost } from '../core/hosts.js';
import { closePluginSockets, servePluginSockets } from '../docker/server.js';
import type { Runtime } from '../runtime.js';

/**
 * `stowage daemon`: register this host, reconcile records with the kernel, serve one socket per
 * driver until SIGTERM/SIGINT. Shutdown removes the sockets and keeps every mount: containers keep
 * running and the next start finds the same state.
 */
export async function runDaemon(rt: Runtime): Promise<void> {
  const { config, log, manager } = rt;
  // Driver checks (e.g. is the NFS server up) warn and never stop the daemon: the other drivers
  // must be served, and the check runs again on every `stowage doctor`.
  for (const driver of manager.drivers()) {
    for (const check of (await driver
      .doctor?.()
      .catch((err: Error) => [{ name: driver.name, ok: false, detail: err.message }])) ?? []) {
      if (!check.ok) log.warn({ driver: driver.name, check: check.name }, check.detail);
    }
  }
  const startup = new StartupTasks(rt);
  await startup.firstTry();
  const sockets = await servePluginSockets(manager, log, {
    socketDir: config.socketDir,
    prefix: config.socketPrefix,
    drivers: config.drivers,
  });
  log.info(
    { drivers: config.drivers, state: config.state, mountRoot: config.mountRoot },
    'stowage daemon ready',
  );

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down; mounts are kept');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  startup.stop();
  await closePluginSockets(sockets, log);
  await rt.close();
  log.info('stopped');
  log.flush();
}

/**
 * Registering this host (with a lease in a shared store) and reconciling need the store. With a
 * shared store that is down at start, the daemon serves anyway (requests fail fast until the store
 * is back) and retries these in the background, with backoff, until they succeed.
 */
class StartupTasks {
  private registered = false;
  private reconciled = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly rt: Runtime) {}

  async firstTry(): Promise<void> {
    if (!(await this.attempt())) this.retry(1000);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private retry(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(async () => {
      const done = await this.attempt().catch((err: Error) => {
        this.rt.log.error({ err: err.message }, 'registering or reconciling failed; retrying');
        return false;
      });
      if (!done) this.retry(Math.min(delayMs * 2, 30_000));
    }, delayMs);
  }

  /** True when everything is done; a store that cannot be reached is worth another try. */
  private async attempt(): Promise<boolean> {
    const { config, log, manager, store } = this.rt;
    try {
      if (!this.registered) {
        await registerHost(
          store,
          config.hostId,
          manager.drivers(),
          log,
          { pid: process.pid },
          {
            leaseTtlSeconds: config.etcd.leaseTtlSeconds,
          },
        );
        this.registered = true;
      }
      if (!this.reconciled) {
        const report = await manager.reconcile();
        this.reconciled = true;
        log.info({ actions: report.actions.length }, 'reconciled state with this host');
      }
      return true;
    } catch (err) {
      if (!isStowageError(err, 'UNAVAILABLE') && !isStowageError(err, 'TIMEOUT')) throw err;
      log.warn({ err: err.message }, 'state store unavailable at start; registering and reconciling later');
      return false;
    }
  }
}
