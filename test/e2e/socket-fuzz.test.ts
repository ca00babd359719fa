import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../../src/base/backoff.js';
import { validateVolumeName } from '../../src/core/names.js';
import { callPlugin } from '../helpers/plugin-client.js';
import { filesIn, loopsBacking, mountedUnder } from './crash/host.js';
import { prng } from './crash/model.js';
import { DaemonProcess } from './daemon-process.js';
import { fuzzRequest } from './fuzz/requests.js';

/**
 * The socket fuzz: the real daemon (local driver, real loop devices and mounts) gets random and
 * mutated requests on every route. It must never exit, every reply must be JSON with a string
 * `Err`, nothing may be written outside its own directories, and Get must stay as fast as before.
 * A fixed seed in CI (STOWAGE_FUZZ_SEED to change it, STOWAGE_FUZZ_REQUESTS for a longer run).
 */
const SEED = Number(process.env.STOWAGE_FUZZ_SEED ?? 20261129);
const REQUESTS = Number(process.env.STOWAGE_FUZZ_REQUESTS ?? 10000);

let base: string;
let outside: string;
let daemon: DaemonProcess;

const dataDir = () => join(base, 'data');

interface RawReply {
  status: number;
  text: string;
}

/** One request exactly as given (method, path, raw body); rejects when no reply comes in 15 s. */
function send(method: string, path: string, body: string | Buffer): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        socketPath: daemon.socket(),
        method,
        path,
        agent: false,
        timeout: 15_000,
        headers: { 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} got no reply within 15 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Median time of `n` Get requests for an existing volume, in ms. */
async function getMedianMs(n: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await callPlugin(daemon.socket(), 'VolumeDriver.Get', { Name: 'fuzz-probe' });
    times.push(performance.now() - t0);
    expect(r.body.Err).toBe('');
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)]!;
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-fuzz-'));
  outside = join(base, 'outside'); // next to the daemon's directories: names try to reach it
  await mkdir(outside);
  daemon = new DaemonProcess({
    dataDir: dataDir(),
    socketDir: join(base, 'sockets'),
    logFile: join(base, 'daemon.log'),
  });
  await daemon.start();
});

afterAll(async () => {
  await daemon?.stop().catch(() => undefined);
  for (const name of await mountedUnder(join(dataDir(), 'volumes')).catch(() => []))
    await execa('umount', ['-l', join(dataDir(), 'volumes', name)], { reject: false });
  for (const dev of (await loopsBacking(join(dataDir(), 'local')).catch(() => new Map())).keys())
    await execa('losetup', ['-d', String(dev)], { reject: false });
  if (base) await rm(base, { recursive: true, force: true });
});

describe('the socket under fuzz', () => {
  it(`answers ${REQUESTS} random and mutated requests (seed ${SEED}) with JSON and an Err, and lives`, async () => {
    expect(
      (
        await callPlugin(daemon.socket(), 'VolumeDriver.Create', {
          Name: 'fuzz-probe',
          Opts: { size: '16M' },
        })
      ).body.Err,
    ).toBe('');
    const before = await getMedianMs(200);
    const rng = prng(SEED);
    const bad: string[] = [];
    const mounted: string[] = []; // [name, id] of every Mount answered OK, less the Unmounts since
    for (let i = 0; i < REQUESTS; i++) {
      const req = fuzzRequest(rng, outside);
      const where = `request ${i} (seed ${SEED}): ${req.method} ${req.path.slice(0, 80)} ${String(req.body).slice(0, 120)}`;
      const reply = await send(req.method, req.path, req.body).catch((err: Error) => err);
      if (reply instanceof Error) {
        bad.push(`${where}: no reply (${reply.message})`);
        break;
      }
      let json: unknown;
      try {
        json = JSON.parse(reply.text);
      } catch {
        bad.push(`${where}: reply is not JSON: ${reply.text.slice(0, 200)}`);
        continue;
      }
      if (typeof json !== 'object' || json === null || typeof (json as { Err?: unknown }).Err !== 'string') {
        bad.push(`${where}: reply has no string Err: ${reply.text.slice(0, 200)}`);
        continue;
      }
      // Remember what is mounted, to undo it at the end as dockerd would.
      const ok = (json as { Err: string }).Err === '';
      if (ok && (req.path === '/VolumeDriver.Mount' || req.path === '/VolumeDriver.Unmount')) {
        const b = JSON.parse(String(req.body)) as { Name: string; ID: string };
        const key = JSON.stringify([b.Name, b.ID]);
        if (req.path.endsWith('Mount') && !req.path.endsWith('Unmount')) mounted.push(key);
        else if (mounted.includes(key)) mounted.splice(mounted.indexOf(key), 1);
      }
      if (bad.length >= 5) break;
    }
    expect(bad).toEqual([]);
    expect(daemon.pid).toBeDefined();
    expect(await daemon.exitsWithin(0)).toBe(false);
    expect((await callPlugin(daemon.socket(), 'Plugin.Activate', '')).body.Implements).toEqual([
      'VolumeDriver',
    ]);

    // Nothing outside its own directories; inside them, only what the volumes it lists account for.
    expect(await readdir(outside)).toEqual([]);
    const listed = (
      (await callPlugin(daemon.socket(), 'VolumeDriver.List', {})).body.Volumes as { Name: string }[]
    ).map((v) => v.Name);
    for (const n of listed) expect(() => validateVolumeName(n)).not.toThrow();
    expect(listed).toEqual(expect.arrayContaining(['fuzz-probe']));
    expect(await filesIn(join(dataDir(), 'local'))).toEqual(listed.map((n) => `${n}.img`).sort());
    const mountDirs = await readdir(join(dataDir(), 'volumes')).catch(() => []);
    expect(mountDirs.filter((n) => !listed.includes(n))).toEqual([]);

    const after = await getMedianMs(200);
    process.stdout.write(
      `socket fuzz: ${REQUESTS} requests, Get median ${before.toFixed(2)} ms before, ${after.toFixed(2)} ms after\n`,
    );
    // Generous: the point is "no slower by an order", not a benchmark (that is bench/).
    expect(after).toBeLessThan(before * 4 + 5);

    for (const m of mounted) {
      const [Name, ID] = JSON.parse(m) as [string, string];
      expect((await callPlugin(daemon.socket(), 'VolumeDriver.Unmount', { Name, ID })).body.Err).toBe('');
    }
    for (const Name of listed)
      expect((await callPlugin(daemon.socket(), 'VolumeDriver.Remove', { Name })).body.Err).toBe('');
    expect(await mountedUnder(join(dataDir(), 'volumes'))).toEqual([]);
    expect(await filesIn(join(dataDir(), 'local'))).toEqual([]);
  }, 600_000);

  it.each([
    ['no request line', 'GARBAGE\r\n\r\n'],
    [
      'a broken chunked body',
      'POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n',
    ],
    ['headers too large', `POST /VolumeDriver.Get HTTP/1.1\r\nX-A: ${'a'.repeat(20_000)}\r\n\r\n`],
    [
      'two Content-Lengths',
      'POST /VolumeDriver.Get HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
    ],
  ])('answers malformed HTTP (%s) with JSON and an Err, and lives', async (_what, raw) => {
    const chunks: Buffer[] = [];
    const socket = connect(daemon.socket(), () => socket.write(raw));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const text = Buffer.concat(chunks).toString('utf8');
    const replies = text.split(/HTTP\/1\.1 /).filter(Boolean);
    expect(replies.length).toBeGreaterThan(0);
    for (const reply of replies) {
      const body = reply.slice(reply.indexOf('\r\n\r\n') + 4);
      expect(typeof (JSON.parse(body) as { Err?: unknown }).Err).toBe('string');
    }
    expect((await callPlugin(daemon.socket(), 'Plugin.Activate', '')).body.Implements).toEqual([
      'VolumeDriver',
    ]);
  });

  it('undoes a Mount whose caller half-closed before the reply, so Remove works (real daemon, real mount)', async () => {
    expect(
      (
        await callPlugin(daemon.socket(), 'VolumeDriver.Create', {
          Name: 'half-closed',
          Opts: { size: '16M' },
        })
      ).body.Err,
    ).toBe('');
    const body = JSON.stringify({ Name: 'half-closed', ID: 'c'.repeat(64) });
    const socket = connect(daemon.socket(), () => {
      socket.end(
        `POST /VolumeDriver.Mount HTTP/1.1\r\nHost: plugin\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
    });
    socket.resume();
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const target = join(dataDir(), 'volumes', 'half-closed');
    // The mount happened (the daemon heard the request) and was taken back (nobody heard the reply).
    await pollUntil(
      async () => {
        const log = await readFile(join(base, 'daemon.log'), 'utf8');
        return log.includes('undoing the mount') &&
          !(await mountedUnder(join(dataDir(), 'volumes'))).includes('half-closed')
          ? true
          : undefined;
      },
      {
        timeoutMs: 20_000,
        initialDelayMs: 20,
        maxDelayMs: 500,
        what: `the unheard mount at ${target} to be undone`,
      },
    );
    expect((await callPlugin(daemon.socket(), 'VolumeDriver.Remove', { Name: 'half-closed' })).body).toEqual({
      Err: '',
    });
    expect(await loopsBacking(join(dataDir(), 'local'))).toEqual(new Map());
  });
});
