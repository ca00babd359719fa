import { chmod, mkdir, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Logger } from '../base/logger.js';
import type { VolumeManager } from '../core/volume-manager.js';
import { clearStaleSocket } from '../net/unix-socket.js';
import { CONTENT_TYPE } from './protocol.js';
import { createPluginHandler, type RequestTimer } from './routes.js';

export interface PluginSocket {
  driver: string;
  path: string;
  server: Server;
}

export interface ServeOptions {
  socketDir: string;
  prefix: string;
  drivers: readonly string[];
  /** Times each driver's requests (metrics); none when metrics are off. */
  timer?: (driver: string) => RequestTimer;
}

/** Serves one unix socket per enabled driver: <socketDir>/<prefix><driver>.sock, mode 0600. */
export async function servePluginSockets(
  manager: VolumeManager,
  log: Logger,
  opts: ServeOptions,
): Promise<PluginSocket[]> {
  await mkdir(opts.socketDir, { recursive: true, mode: 0o755 });
  const sockets: PluginSocket[] = [];
  try {
    for (const driver of opts.drivers) {
      const path = join(opts.socketDir, `${opts.prefix}${driver}.sock`);
      await clearStaleSocket(path);
      const server = createServer(
        createPluginHandler(manager, driver, log.child({ driver }), opts.timer?.(driver)),
      );
      // dockerd's calls last at most 2 min; requests hung longer than that have no one waiting.
      server.requestTimeout = 150_000;
      server.on('clientError', answerMalformed);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
      await chmod(path, 0o600); // root-only: whoever can talk to the socket can mount and delete volumes
      sockets.push({ driver, path, server });
      log.info({ driver, socket: path }, 'serving Docker volume plugin');
    }
  } catch (err) {
    await closePluginSockets(sockets, log);
    throw err;
  }
  return sockets;
}

/**
 * Stops accepting requests, lets those in flight finish (a Mount half done is worse than a slow
 * stop) for up to `graceMs`, then drops what is left and removes the socket files.
 */
export async function closePluginSockets(
  sockets: PluginSocket[],
  log: Logger,
  graceMs = 20_000,
): Promise<void> {
  await Promise.all(
    sockets.map(async (s) => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ driver: s.driver }, 'requests still running at shutdown deadline; dropping them');
          s.server.closeAllConnections();
        }, graceMs);
        s.server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        s.server.closeIdleConnections(); // dockerd keeps connections alive between calls
      });
      await unlink(s.path).catch(() => undefined);
      log.info({ driver: s.driver, socket: s.path }, 'socket closed');
    }),
  );
}

/**
 * A request node:http cannot even parse (no valid request line, a body without a length, headers
 * too large) still gets what every reply here is: JSON with an Err. Node's default is a bare 400.
 */
function answerMalformed(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
  const body = JSON.stringify({
    Err: `malformed HTTP request (${err.code ?? 'unparsable'}): ${err.message}`,
  });
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: ${CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
