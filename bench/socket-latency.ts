/**
 * Latency of the Docker plugin socket: Get, Path and List against the real daemon (a separate
 * `node bin/stowage.js daemon` process over a seeded SQLite store), compared with a "floor"
 * server that answers over HTTP on a unix socket and does nothing else. Run with `npm run bench`;
 * it prints a markdown table and rewrites BENCHMARKS.md with the numbers of this run.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '../src/state/sqlite-store.js';
import { cleanups, runBench } from './lib/cleanups.js';
import {
  type Child,
  checkReply,
  memoryOf,
  PluginClient,
  type Summary,
  seededRandom,
  startNode,
  stopChild,
  summarize,
  timeRequests,
  waitForSocket,
} from './lib/harness.js';
import { type Result, type RunFacts, type RunStats, renderReport } from './lib/report.js';
import { writeSection } from './lib/sections.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SIZES = [1_000, 10_000] as const;
const HOST = 'bench-host';
/** Share of volumes with a mount record on this host: they get a Mountpoint in Get/Path/List. */
const MOUNTED_SHARE = 0.1;
const WARMUP = 200;
const CLIENT_WARMUP = 2000;
/** Requests per op. List is smaller: at 10k volumes each reply is ~1 MB of JSON. */
const COUNTS = { floor: 2000, Get: 2000, Path: 2000, List: 300 } as const;
const LIST_COUNT_10K = 200;
/**
 * Measurements are split into rounds that alternate the ops, so a slow patch of the machine
 * (other tenants, frequency changes) lands on every op alike instead of on one.
 */
const ROUNDS = 4;
const START_TIMEOUT_MS = 30_000;

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join('/tmp', prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function spawnTracked(name: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const child = startNode(name, args, REPO, env);
  cleanups.push(() => stopChild(child));
  return child;
}

// ---------------------------------------------------------------------------------------------
// Seeding

const volumeName = (i: number) => `bench-vol-${String(i).padStart(6, '0')}`;

/**
 * N ready `local` volumes, shaped like the ones the local driver records. One autocommit insert
 * each: SqliteStore has no batch API and this bench must not add one; in WAL mode with
 * synchronous=NORMAL a commit does not fsync, so this stays fast (the time is reported).
 */
async function seedVolumes(dbPath: string, dataDir: string, n: number): Promise<number> {
  const started = performance.now();
  const store = new SqliteStore(dbPath);
  try {
    const createdAt = new Date().toISOString();
    for (let i = 1; i <= n; i++) {
      const name = volumeName(i);
      await store.insertVolume({
        name,
        driver: 'local',
        options: { size: '1G', fsType: 'ext4' },
        givenOptions: ['size'],
        removePolicy: 'delete',
        adopted: false,
        createdAt,
        status: 'ready',
        fields: { image: join(dataDir, 'local', `${name}.img`), sizeBytes: 1073741824 },
      });
    }
  } finally {
    await store.close();
  }
  return performance.now() - started;
}

/**
 * Mount records on this host for every 10th volume. Written while the daemon runs, not before:
 * at start the daemon reconciles records with /proc/self/mountinfo and would drop them all, since
 * nothing is really mounted. Afterwards it reads the store per request, so they count.
 */
async function seedMounts(
  dbPath: string,
  dataDir: string,
  n: number,
): Promise<{ count: number; ms: number }> {
  const started = performance.now();
  const store = new SqliteStore(dbPath);
  const every = Math.round(1 / MOUNTED_SHARE);
  let count = 0;
  try {
    const updatedAt = new Date().toISOString();
    for (let i = every; i <= n; i += every) {
      const name = volumeName(i);
      await store.putMount({
        volume: name,
        host: HOST,
        mountpoint: join(dataDir, 'volumes', name),
        refs: { [randomBytes(32).toString('hex')]: 1 }, // a Docker mount id
        state: 'mounted',
        updatedAt,
      });
      count++;
    }
  } finally {
    await store.close();
  }
  return { count, ms: performance.now() - started };
}

// ---------------------------------------------------------------------------------------------
// One run

/** The daemon's view must match the seed before any timing counts. Returns the List reply. */
async function checkDaemonState(client: PluginClient, n: number, mounted: number): Promise<string> {
  const listReply = await client.post('/VolumeDriver.List', '{}');
  const list = checkReply('List', listReply) as {
    Volumes?: Array<{ Mountpoint: string }>;
  };
  const volumes = list.Volumes ?? [];
  const withMountpoint = volumes.filter((v) => v.Mountpoint !== '').length;
  if (volumes.length !== n || withMountpoint !== mounted) {
    throw new Error(
      `daemon lists ${volumes.length} volumes (${withMountpoint} mounted); seeded ${n} (${mounted} mounted)`,
    );
  }
  const get = checkReply(
    'Get',
    await client.post('/VolumeDriver.Get', JSON.stringify({ Name: volumeName(10) })),
  );
  const mp = (get as { Volume?: { Mountpoint?: string } }).Volume?.Mountpoint;
  if (!mp) throw new Error(`Get of mounted ${volumeName(10)} has no Mountpoint: ${JSON.stringify(get)}`);
  return listReply.body;
}

interface Op {
  op: string;
  client: PluginClient;
  path: string;
  count: number;
  body: (i: number) => string;
}

/**
 * Runs `countOf(op)` requests of each op, split into ROUNDS slices that alternate the ops. Keeping
 * every connection busy every few seconds also keeps it alive: node's agent drops an idle socket
 * about 4 s into the server's 5 s keep-alive window, and List warm-ups at 10k volumes take longer.
 */
async function inRounds(ops: Op[], countOf: (o: Op) => number): Promise<Map<string, Float64Array[]>> {
  const samples = new Map<string, Float64Array[]>(ops.map((o) => [o.op, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const o of ops) {
      const total = countOf(o);
      const share = Math.floor(total / ROUNDS) + (r < total % ROUNDS ? 1 : 0);
      samples.get(o.op)!.push(await timeRequests(o.client, o.path, o.body, share));
    }
  }
  return samples;
}

async function measureOps(ops: Op[]): Promise<Map<string, Summary>> {
  if (new Set(ops.map((o) => o.op)).size !== ops.length) throw new Error('duplicate op names');
  await inRounds(ops, (o) => Math.min(WARMUP, o.count)); // thrown away
  const out = new Map<string, Summary>();
  for (const [op, parts] of await inRounds(ops, (o) => o.count)) {
    const all = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    out.set(op, summarize(all));
  }
  return out;
}

interface SizeRun extends RunStats {
  results: Result[];
}

async function runSize(n: number, floor: PluginClient, env: NodeJS.ProcessEnv): Promise<SizeRun> {
  const tmp = await tempDir(`stowage-bench-${n}-`);
  const dataDir = join(tmp, 'data');
  const sockDir = join(tmp, 'sock');
  const dbPath = join(dataDir, 'state.db');
  // An empty config file: /etc/stowage/config.yaml of this machine, if any, must not leak in.
  const configFile = join(tmp, 'config.yaml');
  await writeFile(configFile, '');
  await mkdir(dataDir, { recursive: true });

  const seedMs = await seedVolumes(dbPath, dataDir, n);
  process.stderr.write(`bench: N=${n}: seeded ${n} volumes in ${seedMs.toFixed(0)} ms\n`);

  const daemon = spawnTracked(
    `daemon (N=${n})`,
    [
      '--no-warnings',
      'bin/stowage.js',
      '--config',
      configFile,
      '--data-dir',
      dataDir,
      '--socket-dir',
      sockDir,
      '--host-id',
      HOST,
      '--log-level',
      'warn',
      'daemon',
    ],
    env,
  );
  const socket = join(sockDir, 'stowage-local.sock');
  const startMs = await waitForSocket(daemon, socket, START_TIMEOUT_MS);
  const mounts = await seedMounts(dbPath, dataDir, n);
  process.stderr.write(
    `bench: N=${n}: daemon serving after ${startMs.toFixed(0)} ms; ${mounts.count} mount records in ${mounts.ms.toFixed(0)} ms\n`,
  );

  const client = new PluginClient(socket);
  try {
    const listReply = await checkDaemonState(client, n, mounts.count);
    checkReply('Floor.SetListReply', await floor.post('/Floor.SetListReply', listReply));
    const listCount = n >= 10_000 ? LIST_COUNT_10K : COUNTS.List;
    const rand = seededRandom(n);
    const randomName = () => JSON.stringify({ Name: volumeName(1 + Math.floor(rand() * n)) });
    const summaries = await measureOps([
      // The floor gets the same request shape as Get (a {"Name"} body) and the same count.
      { op: 'floor', client: floor, path: '/VolumeDriver.Get', count: COUNTS.floor, body: randomName },
      // Not a target: the floor sending the daemon's List reply as is, to split List's time into
      // moving the bytes and producing them.
      { op: 'floor-List', client: floor, path: '/VolumeDriver.List', count: listCount, body: () => '{}' },
      { op: 'Get', client, path: '/VolumeDriver.Get', count: COUNTS.Get, body: randomName },
      { op: 'Path', client, path: '/VolumeDriver.Path', count: COUNTS.Path, body: randomName },
      { op: 'List', client, path: '/VolumeDriver.List', count: listCount, body: () => '{}' },
    ]);
    // Right after the requests, as the spec asks. It is a snapshot of V8's GC sawtooth, so it moves
    // by tens of MB between runs; VmHWM (the peak) is reported next to it.
    const mem = memoryOf(daemon.proc.pid!);
    const floorMedian = summaries.get('floor')!.medianUs;
    const results = [...summaries].map(([op, s]) => ({ n, op, ...s, ratio: s.medianUs / floorMedian }));
    for (const r of results) {
      process.stderr.write(
        `bench: N=${n} ${r.op}: median ${r.medianUs.toFixed(0)} µs, p99 ${r.p99Us.toFixed(0)} µs\n`,
      );
    }
    return {
      results,
      rss: mem.rss,
      hwm: mem.hwm,
      seedMs,
      mountSeedMs: mounts.ms,
      startMs,
      connections: client.connections,
      listBytes: Buffer.byteLength(listReply),
    };
  } finally {
    client.close();
    await stopChild(daemon);
    // Each N's store is up to tens of MB: drop it now rather than at the end of the whole run.
    await rm(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const wallStart = performance.now();
  // The children must not pick up a stowage config from the environment either.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STOWAGE_')));

  const floorDir = await tempDir('stowage-bench-floor-');
  const floorSocket = join(floorDir, 'floor.sock');
  const floorChild = spawnTracked(
    'floor server',
    ['--no-warnings', '--import', 'tsx', 'bench/lib/floor-server.ts', floorSocket],
    env,
  );
  await waitForSocket(floorChild, floorSocket, START_TIMEOUT_MS);
  const floor = new PluginClient(floorSocket);
  cleanups.push(async () => floor.close());
  // The client's own code (http parser, agent) is inside every measured latency: get it compiled
  // before the first measurement, or the first run's floor comes out slower than the second's.
  await timeRequests(
    floor,
    '/VolumeDriver.Get',
    () => JSON.stringify({ Name: volumeName(1) }),
    CLIENT_WARMUP,
  );

  const runs: SizeRun[] = [];
  for (const n of SIZES) runs.push(await runSize(n, floor, env));

  const facts: RunFacts = {
    command: 'npm run bench',
    date: new Date().toISOString(),
    node: process.version,
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memGiB: totalmem() / 2 ** 30,
    kernel: release(),
    wallS: (performance.now() - wallStart) / 1000,
    warmup: WARMUP,
    clientWarmup: CLIENT_WARMUP,
    rounds: ROUNDS,
    mountedShare: MOUNTED_SHARE,
    floorConnections: floor.connections,
    runs: runs.map((r, i) => ({
      n: SIZES[i]!,
      rss: r.rss,
      hwm: r.hwm,
      seedMs: r.seedMs,
      mountSeedMs: r.mountSeedMs,
      startMs: r.startMs,
      connections: r.connections,
      listBytes: r.listBytes,
    })),
  };
  const { table, markdown } = renderReport(
    facts,
    runs.flatMap((r) => r.results),
  );
  process.stdout.write(`${table}\n`);
  await writeSection(join(REPO, 'BENCHMARKS.md'), 'socket-latency', markdown);
  process.stderr.write(`bench: wrote BENCHMARKS.md (${facts.wallS.toFixed(0)} s)\n`);
}

await runBench(main);
