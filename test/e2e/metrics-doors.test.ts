import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Sample, sampleValue, scrape } from '../metrics/scrape.js';
import { DaemonProcess } from './daemon-process.js';
import { installDrivers, KubeletSim, podOptions, pvOptions } from './kubelet-sim.js';

/**
 * The doors that cannot serve /metrics themselves, for real: the installed flexvolume executable
 * (each call a process, as kubelet runs it) and the `stowage` CLI (each command a process) against
 * the data directory of a running `stowage daemon` with metrics.listen. Each counts its requests
 * in the store; the daemon's /metrics shows exactly those, by door, driver, operation and code,
 * and still shows them after the daemon restarts (they are the store's totals). Real loop
 * devices, ext4 and mounts; no dockerd (the Docker door: metrics.test.ts).
 */
const POD_A = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';
const POD_B = '6fa459ea-ee8a-3ca4-894e-db77e160355e';
const VOLUME = 'doors-m1';
let base: string;
let kubelet: KubeletSim;
let daemon: DaemonProcess | undefined;
let url: string;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-e2e-doors-'));
  const pluginDir = join(base, 'plugins');
  const kubeletDir = join(base, 'kubelet');
  await mkdir(kubeletDir);
  const configFile = join(base, 'config.yaml');
  const port = await freePort();
  url = `http://127.0.0.1:${port}/metrics`;
  // One config for the daemon, the CLI and the executable: one data directory, so one store.
  await writeFile(
    configFile,
    [
      `dataDir: ${join(base, 'data')}`,
      'metrics:',
      `  listen: 127.0.0.1:${port}`,
      'flexvolume:',
      `  kubeletDir: ${kubeletDir}`,
      '',
    ].join('\n'),
  );
  await installDrivers(pluginDir, ['local']);
  kubelet = new KubeletSim({ pluginDir, kubeletDir, driver: 'local', env: { STOWAGE_CONFIG: configFile } });
  daemon = new DaemonProcess({
    dataDir: join(base, 'data'),
    socketDir: join(base, 'sockets'),
    logFile: join(base, 'daemon.log'),
    configFile,
  });
  await daemon.start();
}, 120_000);

afterAll(async () => {
  // Only after a failure half-way: whatever the test left mounted or recorded.
  await kubelet?.call(['unmount', kubelet.podDir(POD_A, VOLUME)]).catch(() => undefined);
  await daemon?.cli(['volumes', 'rm', VOLUME]);
  await daemon?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

const requests = (s: Sample[]) =>
  s
    .filter((x) => x.name === 'stowage_requests_total' && x.labels.door !== 'docker')
    .map((x) => `${x.labels.door} ${x.labels.driver} ${x.labels.operation} ${x.labels.code} ${x.value}`)
    .sort();

describe('flexvolume and CLI requests on the daemon /metrics, through the store', () => {
  it('shows none before any was made', async () => {
    const page = await scrape(url);
    expect(page.status).toBe(200);
    expect(requests(page.samples)).toEqual([]);
  });

  it('shows exactly the calls and commands made, by door, driver, operation and code', async () => {
    // kubelet: a probe and a name (no store: not counted), a mount, a refused mount, an unmount.
    await kubelet.ok(['init']);
    await kubelet.ok(['getvolumename', JSON.stringify(pvOptions(VOLUME, {}))]);
    const options = pvOptions(VOLUME, { size: '16M' });
    await kubelet.mountPod(POD_A, VOLUME, options);
    const wrongPod = JSON.stringify(podOptions(POD_B, options));
    expect(await kubelet.fails(['mount', kubelet.podDir(POD_A, VOLUME), wrongPod])).toContain(
      `pod uid ${POD_B} in the options does not match`,
    );
    await kubelet.unmountPod(POD_A, VOLUME);
    // The CLI: a look, a look at a volume that is not there (exit 2), a removal, a listing.
    const cli = daemon!;
    expect((await cli.cli(['volumes', 'inspect', VOLUME])).exitCode).toBe(0);
    expect((await cli.cli(['volumes', 'inspect', 'doors-ghost'])).exitCode).toBe(2);
    expect((await cli.cli(['volumes', 'rm', VOLUME])).exitCode).toBe(0);
    expect((await cli.cli(['volumes', 'ls'])).exitCode).toBe(0);

    const { samples } = await scrape(url);
    const shown = [
      'cli  volumes inspect NOT_FOUND 1',
      'cli  volumes inspect OK 1',
      'cli  volumes ls OK 1',
      'cli  volumes rm OK 1',
      'flexvolume local mount INVALID_ARGUMENT 1',
      'flexvolume local mount OK 1',
      'flexvolume local unmount OK 1',
    ];
    expect(requests(samples)).toEqual(shown);
    const mount = { door: 'flexvolume', driver: 'local', operation: 'mount' };
    expect(sampleValue(samples, 'stowage_request_duration_seconds_count', mount)).toBe(2);
    expect(sampleValue(samples, 'stowage_request_duration_seconds_bucket', { ...mount, le: '+Inf' })).toBe(2);
    // Each call's duration runs from its process's start: at least Node's own start, well above 0.
    expect(sampleValue(samples, 'stowage_request_duration_seconds_sum', mount)).toBeGreaterThan(0);
    expect(
      sampleValue(samples, 'stowage_request_duration_seconds_count', {
        door: 'cli',
        driver: '',
        operation: 'volumes inspect',
      }),
    ).toBe(2);
    // The daemon's own store read at scrape is timed like any store call.
    expect(
      sampleValue(samples, 'stowage_store_request_duration_seconds_count', {
        store: 'sqlite',
        operation: 'requestTallies',
      }),
    ).toBeGreaterThan(0);
  });

  it('shows the same totals after the daemon restarts', async () => {
    const before = requests((await scrape(url)).samples);
    expect(await daemon!.stop()).toBe(0);
    await daemon!.start();
    expect(requests((await scrape(url)).samples)).toEqual(before);
    const log = await readFile(join(base, 'daemon.log'), 'utf8');
    expect(log).not.toContain('reading this host');
  });
});
