import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listeningTcpSockets } from '../metrics/listening.js';
import { type Sample, sampleValue, scrape } from '../metrics/scrape.js';
import { DaemonProcess } from './daemon-process.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, PLUGIN_DIR, TEST_IMAGE } from './env.js';

/**
 * The real `stowage daemon` with metrics.listen, driven by a real dockerd through the plugin
 * socket: N volumes created, each used by one container (a Mount and an Unmount) and removed;
 * /metrics read over HTTP moves by exactly N for each. A daemon without metrics.listen listens on
 * no TCP port, and one with a bad or taken address does not start and says why.
 */
const N = 3;
let base: string;
let dockerd: PrivateDockerd | undefined;
let daemon: DaemonProcess | undefined;

/** A port nothing listens on right now (the kernel's pick, released at once). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

function daemonWith(name: string, env: Record<string, string>): DaemonProcess {
  return new DaemonProcess({
    dataDir: join(base, name, 'data'),
    socketDir: PLUGIN_DIR,
    logFile: join(base, name, 'daemon.log'),
    env,
  });
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-e2e-metrics-'));
  dockerd = await startDockerd();
});

afterAll(async () => {
  // Only after a failure half-way, while the daemon still serves: with its socket gone, dockerd
  // would spend 30 s retrying the plugin for each name.
  if (daemon) for (let i = 0; i < N; i++) await docker(['volume', 'rm', '-f', `metrics-v${i}`]);
  await dockerd?.stop(); // before the plugin, as Docker wants
  await daemon?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('stowage daemon with metrics.listen, under a real dockerd', () => {
  let url: string;
  const docker_ = (operation: string, code = 'OK') => ({ door: 'docker', driver: 'local', operation, code });
  const count = (s: Sample[], operation: string, code = 'OK') =>
    sampleValue(s, 'stowage_requests_total', docker_(operation, code));

  it('serves /metrics at the configured address', async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}/metrics`;
    daemon = daemonWith('on', { STOWAGE_METRICS_LISTEN: `127.0.0.1:${port}` });
    await daemon.start();
    const page = await scrape(url);
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/^text\/plain/);
    expect(await listeningTcpSockets(daemon.pid ?? 0)).toEqual([`127.0.0.1:${port}`]);
    const doctor = await daemon.cli(['doctor', '--json']);
    const checks = JSON.parse(doctor.stdout) as { name: string; ok: boolean; detail: string }[];
    expect(checks.find((c) => c.name === 'metrics')).toEqual({
      name: 'metrics',
      ok: true,
      detail: `on at ${url} (answering)`,
    });
  });

  it('counts N creates, mounts, unmounts and removes made through dockerd, exactly', async () => {
    const before = (await scrape(url)).samples;
    for (let i = 0; i < N; i++) {
      const vol = `metrics-v${i}`;
      const made = await docker(['volume', 'create', '-d', 'stowage-local', '-o', 'size=16M', vol]);
      expect(made.exitCode, made.stderr).toBe(0);
      const ran = await docker([
        'run',
        '--rm',
        '--network',
        'none',
        '-v',
        `${vol}:/data`,
        TEST_IMAGE,
        'sh',
        '-c',
        'echo x > /data/f',
      ]);
      expect(ran.exitCode, ran.stderr).toBe(0);
    }
    const afterRuns = (await scrape(url)).samples;
    expect(sampleValue(afterRuns, 'stowage_mounts', { driver: 'local', state: 'mounted' })).toBe(0);
    for (let i = 0; i < N; i++) {
      const removed = await docker(['volume', 'rm', `metrics-v${i}`]);
      expect(removed.exitCode, removed.stderr).toBe(0);
    }
    const after = (await scrape(url)).samples;
    for (const op of ['Create', 'Mount', 'Unmount', 'Remove']) {
      expect(`${op} ${count(after, op) - count(before, op)}`).toBe(`${op} ${N}`);
      // No refusal of any of them.
      const refused = after.filter(
        (s) => s.name === 'stowage_requests_total' && s.labels.operation === op && s.labels.code !== 'OK',
      );
      expect(refused).toEqual([]);
    }
    const mountSeconds = { door: 'docker', driver: 'local', operation: 'Mount' };
    expect(
      sampleValue(after, 'stowage_request_duration_seconds_count', mountSeconds) -
        sampleValue(before, 'stowage_request_duration_seconds_count', mountSeconds),
    ).toBe(N);
    // The real kernel's waits: N loop devices attached, N ext4 mounts.
    expect(sampleValue(after, 'stowage_attach_duration_seconds_count', { driver: 'local', code: 'OK' })).toBe(
      N,
    );
    expect(sampleValue(after, 'stowage_mount_duration_seconds_count', { fstype: 'ext4', code: 'OK' })).toBe(
      N,
    );
    expect(
      sampleValue(after, 'stowage_store_request_duration_seconds_count', {
        store: 'sqlite',
        operation: 'insertVolume',
      }),
    ).toBe(N);
  });

  it('closes the endpoint when the daemon stops', async () => {
    expect(await daemon?.stop()).toBe(0);
    daemon = undefined;
    await expect(fetch(url)).rejects.toThrow();
  });
});

describe('stowage daemon without metrics.listen', () => {
  it('listens on no TCP port', async () => {
    daemon = daemonWith('off', {});
    await daemon.start();
    expect(await listeningTcpSockets(daemon.pid ?? 0)).toEqual([]);
    expect(await daemon.stop()).toBe(0);
    daemon = undefined;
  });
});

describe('a metrics.listen the daemon cannot use', () => {
  it('is refused at start with a message naming metrics.listen', async () => {
    const bad = daemonWith('bad', { STOWAGE_METRICS_LISTEN: 'localhost' });
    const res = await bad.cli(['daemon']);
    expect(res.exitCode).toBe(1);
    expect(res.stderr).toMatch(/metrics\.listen: must be host:port .*\(set by STOWAGE_METRICS_LISTEN\)/);
  });

  it('stops the start when the port is taken, and serves no plugin socket', async () => {
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const taken = `127.0.0.1:${(holder.address() as AddressInfo).port}`;
    try {
      const busy = daemonWith('taken', { STOWAGE_METRICS_LISTEN: taken });
      const res = await busy.cli(['--drivers', 'local', 'daemon']);
      expect(res.exitCode).toBe(1);
      expect(res.stderr).toContain(`metrics.listen ${taken}: cannot listen there (EADDRINUSE)`);
    } finally {
      await new Promise((r) => holder.close(r));
    }
  });
});
