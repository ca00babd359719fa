import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { StowageError } from '../base/errors.js';
import { parseListenAddress } from '../base/listen-address.js';
import type { Logger } from '../base/logger.js';

export interface MetricsServer {
  /** Where it listens, `host:port` as the kernel gave it (the port filled in for port 0). */
  address: string;
  /** Stops listening and drops open connections (a scrape in progress gets cut). */
  close(): Promise<void>;
}

/**
 * Serves `registry` at http://<listen>/metrics in the Prometheus text format; every other path
 * is a 404. Scrapes are small and quick: connections idle or slow past a few seconds are dropped,
 * so the server never holds up the daemon's shutdown.
 */
export async function serveMetrics(registry: Registry, listen: string, log: Logger): Promise<MetricsServer> {
  const at = parseListenAddress(listen);
  if (!at) {
    throw new StowageError(
      'CONFIG',
      `metrics.listen ${JSON.stringify(listen)} is not host:port (e.g. 127.0.0.1:9477); fix it or unset it`,
    );
  }
  const server = createServer((req, res) => answer(registry, req, res, log));
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 32;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        new StowageError(
          'CONFIG',
          `metrics.listen ${listen}: cannot listen there (${err.code ?? err.message}); choose a free port on an address of this host, or unset metrics.listen to serve no metrics`,
          { cause: err },
        ),
      );
    });
    server.listen({ host: at.host, port: at.port, exclusive: true }, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const address =
    bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function answer(registry: Registry, req: IncomingMessage, res: ServerResponse, log: Logger): void {
  const path = (req.url ?? '').split('?')[0];
  if (path !== '/metrics' || req.method !== 'GET') {
    send(res, 404, 'text/plain; charset=utf-8', 'not found: stowage serves GET /metrics only\n');
    return;
  }
  registry.metrics().then(
    (text) => send(res, 200, registry.contentType, text),
    (err: Error) => {
      log.error({ err: err.message }, 'collecting metrics failed');
      send(res, 500, 'text/plain; charset=utf-8', `collecting metrics failed: ${err.message}\n`);
    },
  );
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
