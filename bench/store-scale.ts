/**
 * Many volumes, many hosts: Docker's Get, Path and List over the real daemon's socket with the
 * SQLite store and with the etcd store (its watch-fed read cache) at the same N, in the same run;
 * what etcd sends per List (from etcd's own /metrics); five etcd daemons listing at once; daemon
 * memory; how long one host's write takes to show on another; `stowage state migrate` time.
 *
 * Sizes: 1,000 and 10,000 volumes. STOWAGE_BENCH_VOLUMES=100000 adds a soak-size run at that N
 * (minutes, and ~1 GB of /tmp and /dev/shm). Run with `npm run bench` (as root): it prints the
 * tables and rewrites the store-scale section of BENCHMARKS.md.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_OPTIONS } from '../deploy/node-options.js';
import { EtcdStore } from '../src/state/etcd-store.js';
import { migrateStore } from '../src/state/migrate.js';
import { SqliteStore } from '../src/state/sqlite-store.js';
import type { MountRecord, StateStore, VolumeRecord } from '../src/state/store.js';
import { type EtcdService, startEtcd } from '../test/services/etcd.js';
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
import { writeSection } from './lib/sections.js';
import { type OpResult, render, type SizeRun } from './lib/store-scale-report.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SOAK = Number(process.env.STOWAGE_BENCH_VOLUMES ?? 0);
const SIZES = [...new Set([1_000, 10_000, ...(SOAK > 0 ? [SOAK] : [])])].sort((a, b) => a - b);
/** Five-daemon, lag and migrate figures are taken at this size (the issue's). */
const FOCUS_N = 10_000;
const HOSTS = 20;
const HOST = 'bench-host-00';
const MOUNTED_SHARE = 0.1;
const ROUNDS = 4;
const START_TIMEOUT_MS = 120_000;
const LAG_SAMPLES = 200;
const DAEMONS = 5;

const counts = (n: number) => ({
  warmup: n >= 100_000 ? 10 : 100,
  Get: n >= 100_000 ? 400 : 1000,
  Path: n >= 100_000 ? 400 : 1000,
  List: n >= 100_000 ? 20 : n >= 10_000 ? 100 : 300,
});

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const env = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith('STOWAGE_') && k !== 'NODE_OPTIONS'),
);

function spawnTracked(name: string, args: string[], childEnv: NodeJS.ProcessEnv = env): Child {
  const child = startNode(name, args, REPO, childEnv);
  cleanups.push(() => stopChild(child));
  return child;
}

// ---------------------------------------------------------------------------------------------
// Seeding

const volumeName = (i: number) => `bench-vol-${String(i).padStart(6, '0')}`;
const hostOf = (i: number) => `bench-host-${String(Math.floor(i / 10) % HOSTS).padStart(2, '0')}`;

function volumeRecord(i: number, createdAt: string): VolumeRecord {
  const name = volumeName(i);
  return {
    name,
    driver: 'local',
    options: { size: '1G', fsType: 'ext4' },
    givenOptions: ['size'],
    removePolicy: 'delete',
    adopted: false,
    createdAt,
    status: 'ready',
    fields: { image: `/var/lib/stowage/local/${name}.img`, sizeBytes: 1073741824 },
  };
}

/** Every 10th volume is mounted, the mounts spread round-robin over HOSTS hosts. */
function mountRecords(n: number, dataDir: string): MountRecord[] {
  const out: MountRecord[] = [];
  const updatedAt = new Date().toISOString();
  for (let i = Math.round(1 / MOUNTED_SHARE); i <= n; i += Math.round(1 / MOUNTED_SHARE)) {
    out.push({
      volume: volumeName(i),
      host: hostOf(i),
      mountpoint: join(dataDir, 'volumes', volumeName(i)),
      refs: { [randomBytes(32).toString('hex')]: 1 },
      state: 'mounted',
      updatedAt,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Daemons

interface Daemon {
  child: Child;
  client: PluginClient;
}

/**
 * A daemon as the deploy forms run it: with their NODE_OPTIONS (deploy/node-options.ts), unless
 * `nodeDefaults` (the same-run baseline of what that heap sizing changes).
 */
async function startDaemon(
  name: string,
  dir: string,
  state: string,
  hostId: string,
  nodeDefaults = false,
): Promise<Daemon> {
  const configFile = join(dir, 'config.yaml');
  await mkdir(join(dir, 'data'), { recursive: true });
  await writeFile(configFile, '');
  const child = spawnTracked(
    name,
    [
      '--no-warnings',
      'bin/stowage.js',
      '--config',
      configFile,
      '--data-dir',
      join(dir, 'data'),
      '--state',
      state,
      '--socket-dir',
      join(dir, 'sock'),
      '--host-id',
      hostId,
      '--log-level',
      'warn',
      'daemon',
    ],
    nodeDefaults ? env : { ...env, NODE_OPTIONS },
  );
  const socket = join(dir, 'sock', 'stowage-local.sock');
  await waitForSocket(child, socket, START_TIMEOUT_MS);
  const client = new PluginClient(socket, 60_000);
  cleanups.push(async () => client.close());
  return { child, client };
}

/** Waits until the daemon lists n volumes with `mounted` mountpoints (the etcd cache is warm then). */
async function untilListed(d: Daemon, n: number, mounted: number): Promise<string> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const reply = await d.client.post('/VolumeDriver.List', '{}');
    const vols = (checkReply('List', reply) as { Volumes?: Array<{ Mountpoint: string }> }).Volumes ?? [];
    const withMp = vols.filter((v) => v.Mountpoint !== '').length;
    if (vols.length === n && withMp === mounted) return reply.body;
    if (Date.now() > deadline)
      throw new Error(`daemon lists ${vols.length} (${withMp} mounted), want ${n} (${mounted})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// etcd's own figures

async function etcdMetric(etcd: EtcdService, name: string): Promise<number> {
  const text = await (await fetch(`${etcd.endpoint}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) total += Number(line.split(' ').pop());
  return total;
}
const SENT = 'etcd_network_client_grpc_sent_bytes_total';
/** KV requests etcd answered (Range: reads; the daemon's writes and the bench's seeding are Txn). */
const SERVED = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Range"';

// ---------------------------------------------------------------------------------------------
// One size

async function runSize(n: number, etcd: EtcdService): Promise<SizeRun> {
  const tmp = await mkdtemp(join('/tmp', `stowage-scale-${n}-`));
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  const c = counts(n);
  const createdAt = new Date().toISOString();
  const dbPath = join(tmp, 'sqlite', 'data', 'state.db');
  await mkdir(join(tmp, 'sqlite', 'data'), { recursive: true });
  const mounts = mountRecords(n, join(tmp, 'sqlite', 'data'));
  const own = mounts.filter((m) => m.host === HOST);

  let started = performance.now();
  const sqlite = new SqliteStore(dbPath);
  for (let i = 1; i <= n; i++) await sqlite.insertVolume(volumeRecord(i, createdAt));
  for (const m of mounts) await sqlite.putMount(m);
  log(
    `N=${n}: SQLite seeded (${mounts.length} mounts over ${HOSTS} hosts) in ${(performance.now() - started).toFixed(0)} ms`,
  );

  const prefix = `/scale-${n}`;
  const seedStore = new EtcdStore({ endpoints: [etcd.endpoint], prefix, requestTimeoutMs: 30_000 });
  started = performance.now();
  await migrateStore(sqlite, seedStore);
  const migrateMs = performance.now() - started;
  await sqlite.close();
  log(`N=${n}: stowage state migrate (SQLite -> etcd) took ${migrateMs.toFixed(0)} ms`);

  const sq = await startDaemon(`sqlite daemon N=${n}`, join(tmp, 'sqlite'), `sqlite:${dbPath}`, HOST);
  const ed = await startDaemon(`etcd daemon N=${n}`, join(tmp, 'etcd'), `${etcd.url}${prefix}`, HOST);
  // The start-up reconcile drops this host's mount records (nothing is really mounted): once it
  // has, they are written again.
  await untilListed(sq, n, 0);
  await untilListed(ed, n, 0);
  const sqliteWriter = new SqliteStore(dbPath);
  for (const m of own) await sqliteWriter.putMount(m);
  await sqliteWriter.close();
  // In batched txns (as migrate writes): one at a time, each would make the daemon rebuild its
  // List for the bench's polling, and that garbage would show in the RSS taken below.
  await seedStore.importAll({ hosts: [], volumes: [], attachments: [], mounts: own });
  const listReply = await untilListed(sq, n, own.length);
  const etcdList = await untilListed(ed, n, own.length);
  if (etcdList !== listReply) throw new Error('the SQLite and etcd daemons list different volumes');

  const rand = seededRandom(n);
  const randomName = () => JSON.stringify({ Name: volumeName(1 + Math.floor(rand() * n)) });
  const ops = [
    { backend: 'sqlite', op: 'Get', d: sq, path: '/VolumeDriver.Get', count: c.Get, body: randomName },
    { backend: 'etcd', op: 'Get', d: ed, path: '/VolumeDriver.Get', count: c.Get, body: randomName },
    { backend: 'sqlite', op: 'Path', d: sq, path: '/VolumeDriver.Path', count: c.Path, body: randomName },
    { backend: 'etcd', op: 'Path', d: ed, path: '/VolumeDriver.Path', count: c.Path, body: randomName },
    { backend: 'sqlite', op: 'List', d: sq, path: '/VolumeDriver.List', count: c.List, body: () => '{}' },
    { backend: 'etcd', op: 'List', d: ed, path: '/VolumeDriver.List', count: c.List, body: () => '{}' },
  ] as const;
  for (const o of ops) await timeRequests(o.d.client, o.path, o.body, Math.min(c.warmup, o.count));
  const samples = new Map<string, Float64Array[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const o of ops) {
      const share = Math.ceil(o.count / ROUNDS);
      const key = `${o.backend} ${o.op}`;
      samples.set(key, [...(samples.get(key) ?? []), await timeRequests(o.d.client, o.path, o.body, share)]);
    }
  }
  const results: OpResult[] = ops.map((o) => {
    const parts = samples.get(`${o.backend} ${o.op}`)!;
    const all = new Float64Array(parts.reduce((k, p) => k + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return { n, backend: o.backend, op: o.op, ...summarize(all) };
  });
  const rss = { sqlite: memoryOf(sq.child.proc.pid!), etcd: memoryOf(ed.child.proc.pid!) };
  for (const r of results) {
    log(
      `N=${n} ${r.backend} ${r.op}: median ${(r.medianUs / 1000).toFixed(2)} ms, p99 ${(r.p99Us / 1000).toFixed(2)} ms`,
    );
  }

  // What etcd sends for warm Lists, next to what it sends anyway (lease keepalives, the watch's
  // progress answers) in an idle window of the same length.
  const lists = n >= 100_000 ? 20 : 200;
  let before = await etcdMetric(etcd, SENT);
  const served = await etcdMetric(etcd, SERVED);
  let t0 = performance.now();
  await timeRequests(ed.client, '/VolumeDriver.List', () => '{}', lists);
  const window = performance.now() - t0;
  const sentDuringLists = (await etcdMetric(etcd, SENT)) - before;
  // Range and Txn requests etcd served meanwhile (the fetch of /metrics itself is HTTP, not gRPC).
  const requestsDuringLists = (await etcdMetric(etcd, SERVED)) - served;
  // The background, over a window long enough to hold several heartbeats: a rate, scaled to the
  // Lists' window (a single ~38 B heartbeat answer lands in a short window by chance or not).
  const idleMs = Math.max(window, 5000);
  before = await etcdMetric(etcd, SENT);
  await new Promise((r) => setTimeout(r, idleMs));
  const sentIdle = (((await etcdMetric(etcd, SENT)) - before) * window) / idleMs;
  const settled = { sqlite: memoryOf(sq.child.proc.pid!).rss, etcd: memoryOf(ed.child.proc.pid!).rss };
  log(
    `N=${n}: etcd sent ${sentDuringLists} B and served ${requestsDuringLists} KV requests during ${lists} warm Lists (${window.toFixed(0)} ms); ${sentIdle.toFixed(0)} B expected idle in as long`,
  );

  // Before the cache: the daemon's List was this store call (a txn reading volumes and all mounts).
  const directCalls = n >= 100_000 ? 3 : 10;
  const directMs: number[] = [];
  before = await etcdMetric(etcd, SENT);
  for (let i = 0; i < directCalls; i++) {
    t0 = performance.now();
    await seedStore.listVolumeSummaries(HOST);
    directMs.push(performance.now() - t0);
  }
  const direct = {
    calls: directCalls,
    medianMs: directMs.sort((a, b) => a - b)[Math.ceil(directCalls / 2) - 1]!,
    bytesPerCall: ((await etcdMetric(etcd, SENT)) - before) / directCalls,
  };

  const run: Omit<SizeRun, 'nodeDefaults'> = {
    n,
    results,
    rss,
    settled,
    migrateMs,
    listBytes: Buffer.byteLength(listReply),
    warm: { lists, sentDuringLists, sentIdle, requestsDuringLists, windowMs: window },
    direct,
  };
  await stopDaemon(sq);
  if (n === FOCUS_N) {
    run.five = await fiveDaemons(n, own.length, tmp, etcd, prefix, ed);
    run.lag = await visibilityLag(etcd, prefix, seedStore);
  }
  await stopDaemon(ed);
  const nodeDefaults = await withNodeDefaults(n, tmp, `${etcd.url}${prefix}`, own, seedStore, c);
  await seedStore.close();
  await rm(tmp, { recursive: true, force: true });
  return { ...run, nodeDefaults };
}

/**
 * The baseline of the memory figures: the etcd daemon again, on the same store and host, with
 * node's own heap sizing. Its start-up goes the same way (the reconcile drops this host's mount
 * records, the bench writes them again) and it answers the same requests; then its RSS.
 */
async function withNodeDefaults(
  n: number,
  tmp: string,
  state: string,
  own: MountRecord[],
  seedStore: EtcdStore,
  c: ReturnType<typeof counts>,
): Promise<{ rss: number; hwm: number; settled: number }> {
  const d = await startDaemon(
    `etcd daemon N=${n}, node defaults`,
    join(tmp, 'etcd-defaults'),
    state,
    HOST,
    true,
  );
  await untilListed(d, n, 0);
  await seedStore.importAll({ hosts: [], volumes: [], attachments: [], mounts: own });
  await untilListed(d, n, own.length);
  const rand = seededRandom(n);
  const randomName = () => JSON.stringify({ Name: volumeName(1 + Math.floor(rand() * n)) });
  for (const [path, count, body] of [
    ['/VolumeDriver.Get', c.Get, randomName],
    ['/VolumeDriver.Path', c.Path, randomName],
    ['/VolumeDriver.List', c.List, () => '{}'],
  ] as const) {
    await timeRequests(d.client, path, body, Math.min(c.warmup, count) + count);
  }
  const m = memoryOf(d.child.proc.pid!);
  await new Promise((r) => setTimeout(r, 5000));
  const settled = memoryOf(d.child.proc.pid!).rss;
  await stopDaemon(d);
  log(
    `N=${n}: etcd daemon with node's default heap sizing: RSS ${(m.rss / 1e6).toFixed(1)} MB (peak ${(m.hwm / 1e6).toFixed(1)} MB)`,
  );
  return { ...m, settled };
}

async function stopDaemon(d: Daemon): Promise<void> {
  d.client.close();
  await stopChild(d.child);
}

/** Four more etcd daemons (separate processes, own host ids), then all five list at once. */
async function fiveDaemons(
  n: number,
  mounted: number,
  tmp: string,
  etcd: EtcdService,
  prefix: string,
  first: Daemon,
): Promise<Summary & { daemons: number; lists: number }> {
  const others: Daemon[] = [];
  for (let i = 1; i < DAEMONS; i++) {
    others.push(
      await startDaemon(
        `etcd daemon ${i + 1}`,
        join(tmp, `etcd-${i}`),
        `${etcd.url}${prefix}`,
        `bench-host-x${i}`,
      ),
    );
  }
  const all = [first, ...others];
  for (const d of others) await untilListed(d, n, 0);
  await untilListed(first, n, mounted);
  const lists = counts(n).List;
  for (const d of all) await timeRequests(d.client, '/VolumeDriver.List', () => '{}', 10);
  const parts = await Promise.all(
    all.map((d) => timeRequests(d.client, '/VolumeDriver.List', () => '{}', lists)),
  );
  for (const d of others) await stopDaemon(d);
  const merged = new Float64Array(parts.reduce((k, p) => k + p.length, 0));
  let at = 0;
  for (const p of parts) {
    merged.set(p, at);
    at += p.length;
  }
  const s = summarize(merged);
  log(
    `five daemons listing at once: median ${(s.medianUs / 1000).toFixed(2)} ms, p99 ${(s.p99Us / 1000).toFixed(2)} ms`,
  );
  return { ...s, daemons: DAEMONS, lists };
}

/** A write through one store, and when a cached store in another process first answers it. */
async function visibilityLag(etcd: EtcdService, prefix: string, writer: StateStore): Promise<Summary> {
  const reader = spawnTracked('lag reader', [
    '--no-warnings',
    '--import',
    'tsx',
    'bench/lib/etcd-lag-reader.ts',
    etcd.endpoint,
    prefix,
    String(LAG_SAMPLES),
  ]);
  const seen = new Map<number, number>();
  let buffer = '';
  const arrivals: Array<() => void> = [];
  reader.proc.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const lines = buffer.split('\n');
    buffer = lines.pop() ?? '';
    for (const line of lines) {
      const [i, at] = line.split(' ');
      if (at !== undefined) seen.set(Number(i), Number(at));
      for (const wake of arrivals.splice(0)) wake();
    }
  });
  const until = async (ready: () => boolean, what: string) => {
    const deadline = Date.now() + 60_000;
    while (!ready()) {
      if (Date.now() > deadline) throw new Error(`lag reader: ${what} did not come:\n${reader.output()}`);
      await new Promise<void>((r) => {
        arrivals.push(r);
        setTimeout(r, 100);
      });
    }
  };
  await until(() => reader.output().includes('ready'), 'ready');
  const lags = new Float64Array(LAG_SAMPLES);
  const createdAt = new Date().toISOString();
  for (let i = 0; i < LAG_SAMPLES; i++) {
    const t0 = performance.timeOrigin + performance.now();
    await writer.insertVolume({ ...volumeRecord(0, createdAt), name: `lag-${i}` });
    await until(() => seen.has(i), `lag-${i}`);
    lags[i] = (seen.get(i)! - t0) * 1000;
    await new Promise((r) => setTimeout(r, 5));
  }
  await stopChild(reader);
  // The store holds n volumes again for what follows (the node-defaults daemon counts them).
  for (let i = 0; i < LAG_SAMPLES; i++) await writer.deleteVolume(`lag-${i}`);
  const s = summarize(lags);
  log(`visibility lag: median ${(s.medianUs / 1000).toFixed(1)} ms, p99 ${(s.p99Us / 1000).toFixed(1)} ms`);
  return s;
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const wallStart = performance.now();
  const etcd = await startEtcd();
  cleanups.push(() => etcd.stop());
  const runs: SizeRun[] = [];
  for (const n of SIZES) runs.push(await runSize(n, etcd));
  const { text, markdown } = render(runs, (performance.now() - wallStart) / 1000, {
    focusN: FOCUS_N,
    lagSamples: LAG_SAMPLES,
    hosts: HOSTS,
    host: HOST,
    mountedShare: MOUNTED_SHARE,
    rounds: ROUNDS,
    sentMetric: SENT,
    nodeOptions: NODE_OPTIONS,
  });
  process.stdout.write(`${text}\n`);
  await writeSection(join(REPO, 'BENCHMARKS.md'), 'store-scale', markdown);
  log(`wrote BENCHMARKS.md (${((performance.now() - wallStart) / 1000).toFixed(0)} s)`);
}

await runBench(main);
