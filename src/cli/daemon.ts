import { registerHost } from '../core/hosts.js';
import { closePluginSockets, servePluginSockets } from '../docker/server.js';
import type { Runtime } from '../runtime.js';

/**
 * `stowage daemon`: register this host, reconcile records with the kernel, serve one socket per
 * driver until SIGTERM/SIGINT. Shutdown removes the sockets and keeps every mount: containers keep
 * running and the next start finds the same state.
 */
export async function runDaemon(rt: Runtime): Promise<void> {
  const { config, log, manager, store } = rt;
  await registerHost(store, config.hostId, manager.drivers(), log, { pid: process.pid });
  // Driver checks (e.g. is the NFS server up) warn and never stop the daemon: the other drivers
  // must be served, and the check runs again on every `stowage doctor`.
  for (const driver of manager.drivers()) {
    for (const check of (await driver
      .doctor?.()
      .catch((err: Error) => [{ name: driver.name, ok: false, detail: err.message }])) ?? []) {
      if (!check.ok) log.warn({ driver: driver.name, check: check.name }, check.detail);
    }
  }
  const report = await manager.reconcile();
  log.info({ actions: report.actions.length }, 'reconciled state with this host');
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
  await closePluginSockets(sockets, log);
  await rt.close();
  log.info('stopped');
  log.flush();
}
