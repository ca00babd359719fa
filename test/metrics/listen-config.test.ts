import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseListenAddress } from '../../src/base/listen-address.js';
import { metricsCheck } from '../../src/cli/doctor.js';
import { loadConfig } from '../../src/config.js';
import { StowageMetrics } from '../../src/metrics/metrics.js';
import { type MetricsServer, serveMetrics } from '../../src/metrics/server.js';

/** metrics.listen: off by default, checked at start with its name in the message, shown by doctor. */
const load = (env: Record<string, string>, flags: Record<string, unknown> = {}) =>
  loadConfig({ file: '/dev/null', env, flags });

describe('metrics.listen', () => {
  it('is off by default', () => {
    expect(load({}).metrics.listen).toBeUndefined();
  });

  it('is read from STOWAGE_METRICS_LISTEN and from the file or flags', () => {
    expect(load({ STOWAGE_METRICS_LISTEN: '127.0.0.1:9477' }).metrics.listen).toBe('127.0.0.1:9477');
    expect(load({}, { metrics: { listen: '[::1]:9477' } }).metrics.listen).toBe('[::1]:9477');
  });

  it.each(['9477', 'localhost', '127.0.0.1:', '127.0.0.1:65536', 'http://127.0.0.1:9477', '::1:9477', ' :1'])(
    'refuses %j, naming metrics.listen and where the value came from',
    (value) => {
      expect(() => load({ STOWAGE_METRICS_LISTEN: value })).toThrow(
        /metrics\.listen: must be host:port .*\(set by STOWAGE_METRICS_LISTEN\)/,
      );
    },
  );

  it('parses host:port, bracketed IPv6 and port 0', () => {
    expect(parseListenAddress('0.0.0.0:9477')).toEqual({ host: '0.0.0.0', port: 9477 });
    expect(parseListenAddress('node-1.example:80')).toEqual({ host: 'node-1.example', port: 80 });
    expect(parseListenAddress('[::]:0')).toEqual({ host: '::', port: 0 });
  });
});

describe('stowage doctor: metrics', () => {
  let served: MetricsServer | undefined;
  let other: Server | undefined;
  afterEach(async () => {
    await served?.close();
    served = undefined;
    if (other) await new Promise((r) => other?.close(r));
    other = undefined;
  });

  it('says metrics are off, and how to turn them on', async () => {
    expect(await metricsCheck(load({}))).toEqual({
      name: 'metrics',
      ok: true,
      detail: 'off (set metrics.listen, e.g. 127.0.0.1:9477, to serve /metrics)',
    });
  });

  it('says where they are served, and whether the daemon answers there', async () => {
    served = await serveMetrics(new StowageMetrics().registry, '127.0.0.1:0', pino({ level: 'silent' }));
    const on = load({ STOWAGE_METRICS_LISTEN: served.address });
    expect(await metricsCheck(on)).toEqual({
      name: 'metrics',
      ok: true,
      detail: `on at http://${served.address}/metrics (answering)`,
    });
    await served.close();
    served = undefined;
    expect((await metricsCheck(on)).detail).toBe(
      `on at http://${on.metrics.listen}/metrics (not answering now; the daemon serves it while it runs)`,
    );
  });

  it('fails when another program answers on that address', async () => {
    other = createServer((_req, res) => res.end('hello'));
    await new Promise<void>((r) => other?.listen(0, '127.0.0.1', r));
    const listen = `127.0.0.1:${(other.address() as AddressInfo).port}`;
    const check = await metricsCheck(load({ STOWAGE_METRICS_LISTEN: listen }));
    expect(check.ok).toBe(false);
    expect(check.detail).toMatch(`metrics.listen is ${listen}, but something else answers there (HTTP 200)`);
  });
});
