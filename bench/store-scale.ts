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
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EtcdStore } from '../src/state/etcd-store.js';
import { migrateStore } from '../src/state/migrate.js';
import { SqliteStore } from '../src/state/sqlite-store.js';
import type { MountRecord, StateStore, VolumeRecord } from '../src/state/store.js';
import { type EtcdService, startEtcd } from '../test/services/etcd.js';
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

// ---------------------------------------------------------------------------------------------
// Cleanup: children, etcd and temp dirs go away on success, failure and Ctrl-C alike.

const cleanups: Array<() => Promise<void>> = [];
async function cleanup(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    await fn().catch((err: unknown) => process.stderr.write(`bench: cleanup failed: ${String(err)}\n`));
  }
}
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    process.stderr.write(`bench: ${signal}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STOWAGE_')));

function spawnTracked(name: string, args: string[]): Child {
  const child = startNode(name, args, REPO, env);
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

async function startDaemon(name: string, dir: string, state: string, hostId: string): Promise<Daemon> {
  const configFile = join(dir, 'config.yaml');
  await mkdir(join(dir, 'data'), { recursive: true });
  await writeFile(configFile, '');
  const child = spawnTracked(name, [
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
  ]);
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

interface OpResult extends Summary {
  n: number;
  backend: 'sqlite' | 'etcd';
  op: string;
}

interface SizeRun {
  n: number;
  results: OpResult[];
  rss: { sqlite: { rss: number; hwm: number }; etcd: { rss: number; hwm: number } };
  /** VmRSS after the idle window (≥ 5 s without requests): what is left once V8 has collected. */
  settled: { sqlite: number; etcd: number };
  migrateMs: number;
  listBytes: number;
  /** etcd bytes sent during the warm Lists, and during an idle window as long. */
  warm: {
    lists: number;
    sentDuringLists: number;
    sentIdle: number;
    requestsDuringLists: number;
    windowMs: number;
  };
  /** The store call the daemon made per List before the cache (no cache), in-process. */
  direct: { calls: number; medianMs: number; bytesPerCall: number };
  five?: Summary & { daemons: number; lists: number };
  lag?: Summary;
}

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

  const run: SizeRun = {
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
  await seedStore.close();
  await rm(tmp, { recursive: true, force: true });
  return run;
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
  const s = summarize(lags);
  log(`visibility lag: median ${(s.medianUs / 1000).toFixed(1)} ms, p99 ${(s.p99Us / 1000).toFixed(1)} ms`);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Report

const ms = (us: number) => `${(us / 1000).toFixed(2)} ms`;
const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
const fmtN = (n: number) => n.toLocaleString('en-US');
function table(headers: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

function render(runs: SizeRun[], wallS: number): { text: string; markdown: string } {
  const find = (r: SizeRun, backend: string, op: string) =>
    r.results.find((x) => x.backend === backend && x.op === op)!;
  const latency = table(
    ['Volumes', 'Op', 'SQLite p50 / p99', 'etcd (cached) p50 / p99', 'etcd / SQLite (p50)'],
    runs.flatMap((r) =>
      ['Get', 'Path', 'List'].map((op) => {
        const s = find(r, 'sqlite', op);
        const e = find(r, 'etcd', op);
        return [
          fmtN(r.n),
          op,
          `${ms(s.medianUs)} / ${ms(s.p99Us)}`,
          `${ms(e.medianUs)} / ${ms(e.p99Us)}`,
          `${(e.medianUs / s.medianUs).toFixed(2)}×`,
        ];
      }),
    ),
  );
  const etcdTable = table(
    [
      'Volumes',
      'During warm Lists: etcd KV requests, bytes sent',
      'etcd background bytes in as long (idle rate)',
      'List before the cache (store call): p50, bytes',
      'List reply',
      'RSS SQLite / etcd daemon (peak)',
      'RSS after ≥ 5 s idle',
      'migrate SQLite → etcd',
    ],
    runs.map((r) => [
      fmtN(r.n),
      `${r.warm.requestsDuringLists} requests, ${r.warm.sentDuringLists} B over ${r.warm.lists} Lists (${r.warm.windowMs.toFixed(0)} ms)`,
      `${r.warm.sentIdle.toFixed(0)} B`,
      `${r.direct.medianMs.toFixed(1)} ms, ${mb(r.direct.bytesPerCall)}`,
      mb(r.listBytes),
      `${mb(r.rss.sqlite.rss)} (${mb(r.rss.sqlite.hwm)}) / ${mb(r.rss.etcd.rss)} (${mb(r.rss.etcd.hwm)})`,
      `${mb(r.settled.sqlite)} / ${mb(r.settled.etcd)}`,
      `${(r.migrateMs / 1000).toFixed(2)} s`,
    ]),
  );
  const focus = runs.find((r) => r.n === FOCUS_N);
  const largest = runs[runs.length - 1]!;
  const verdicts: Array<[string, string, boolean]> = [];
  for (const r of runs) {
    const s = find(r, 'sqlite', 'List');
    const e = find(r, 'etcd', 'List');
    verdicts.push([
      `etcd List p50 ≤ 1.5× SQLite's at ${fmtN(r.n)}`,
      `${(e.medianUs / s.medianUs).toFixed(2)}× (${ms(e.medianUs)} vs ${ms(s.medianUs)})`,
      e.medianUs <= 1.5 * s.medianUs,
    ]);
    const g = find(r, 'etcd', 'Get');
    verdicts.push([`etcd Get p50 ≤ 0.5 ms at ${fmtN(r.n)}`, ms(g.medianUs), g.medianUs <= 500]);
    const w = r.warm;
    verdicts.push([
      `zero bytes from etcd per warm List at ${fmtN(r.n)}`,
      `${w.requestsDuringLists} KV requests, ${w.sentDuringLists} B sent over ${w.lists} Lists (${w.sentIdle.toFixed(0)} B background expected in as long)`,
      // The idle traffic (a heartbeat answer is ~38 B) lands in either window by chance.
      w.requestsDuringLists === 0 && (w.sentDuringLists - w.sentIdle) / w.lists < 1,
    ]);
  }
  verdicts.push([
    `RSS ≤ 250 MB at ${fmtN(largest.n)} (etcd daemon)`,
    `${mb(largest.rss.etcd.rss)} right after the requests (peak ${mb(largest.rss.etcd.hwm)}; ${mb(largest.settled.etcd)} after ≥ 5 s idle; SQLite's ${mb(largest.rss.sqlite.rss)})${largest.n < 100_000 ? '; the 100,000 run is the soak size: STOWAGE_BENCH_VOLUMES=100000' : ''}`,
    largest.rss.etcd.rss <= 250e6,
  ]);
  if (focus?.lag) {
    verdicts.push([
      'cross-host visibility lag p99 ≤ 100 ms',
      `p50 ${ms(focus.lag.medianUs)}, p99 ${ms(focus.lag.p99Us)}`,
      focus.lag.p99Us <= 100_000,
    ]);
  }
  if (focus)
    verdicts.push([
      'migrate 10,000 volumes ≤ 5 s',
      `${(focus.migrateMs / 1000).toFixed(2)} s`,
      focus.migrateMs <= 5000,
    ]);
  const targets = table(
    ['Target', 'Measured', 'Met'],
    verdicts.map(([t, m, ok]) => [t, m, ok ? 'yes' : '**no**']),
  );
  const five = focus?.five
    ? `Five etcd daemons (separate processes, one store each, hosts of their own) listing ${fmtN(FOCUS_N)} volumes at once, ${focus.five.lists} Lists each, one at a time per daemon: p50 ${ms(focus.five.medianUs)}, p90 ${ms(focus.five.p90Us)}, p99 ${ms(focus.five.p99Us)} (one daemon alone: ${ms(find(focus, 'etcd', 'List').medianUs)}).`
    : '';
  const lag = focus?.lag
    ? `Cross-host visibility lag (${LAG_SAMPLES} writes at ${fmtN(FOCUS_N)} volumes): one store writes a volume, a cached store in another process polls Get every 1 ms until it answers it; from just before the write to that answer: p50 ${ms(focus.lag.medianUs)}, p90 ${ms(focus.lag.p90Us)}, p99 ${ms(focus.lag.p99Us)}.`
    : '';
  const markdown = `## Many volumes, many hosts: SQLite and etcd (read cache)

Generated by \`bench/store-scale.ts\` from one real run; do not edit by hand, rerun instead.

Machine: ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()},
Node ${process.version}, etcd 3.4 (Debian) on loopback with its data on /dev/shm. Run on ${new Date().toISOString()}, took ${wallS.toFixed(0)} s.

### Docker requests over the daemon's socket

${latency}

### etcd traffic, memory, migrate

${etcdTable}

${five}

${lag}

### Targets

${targets}

### Method

- Per N, ${fmtN(MOUNTED_SHARE * 100)}% of the volumes mounted, the mounts spread over ${HOSTS} hosts (the daemons run
  as ${HOST}, which holds 1/${HOSTS} of them). SQLite is seeded through \`SqliteStore\`; etcd by
  \`migrateStore\` from that SQLite file (what \`stowage state migrate\` runs), which is the migrate time.
- Two real daemons (\`node bin/stowage.js daemon\`, one on each store) run at once; requests go one at a time
  over a keep-alive connection, as dockerd sends them, in ${ROUNDS} rounds alternating store and op. Get and
  Path ask for random existing names (fixed seed). Both daemons' List replies are checked to be
  byte-identical before timing.
- etcd traffic: \`${SENT}\` and the Range requests etcd served (\`grpc_server_handled_total\`), from
  etcd's own /metrics before and after the warm Lists (200; 20 at 100,000), next to the background
  traffic expected in as long (lease keepalives, the read caches' watch heartbeat once a second), from
  the rate over an idle window of at least 5 s. Met: no request, and under 1 B per List beyond it. "Before the cache" is the store call the daemon made per List until now
  (\`EtcdStore.listVolumeSummaries\` without the read cache, in the bench process).
- RSS: VmRSS (VmHWM) of the daemon processes right after the timed requests, and VmRSS again after the
  idle window (at least 5 s without a request). The target is judged on the first.
- 100,000 volumes: \`STOWAGE_BENCH_VOLUMES=100000 npm run bench\` (a soak-size run; not part of CI).
`;
  return { text: `${latency}\n\n${etcdTable}\n\n${five}\n${lag}\n\n${targets}`, markdown };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const wallStart = performance.now();
  const etcd = await startEtcd();
  cleanups.push(() => etcd.stop());
  const runs: SizeRun[] = [];
  for (const n of SIZES) runs.push(await runSize(n, etcd));
  const { text, markdown } = render(runs, (performance.now() - wallStart) / 1000);
  process.stdout.write(`${text}\n`);
  await writeSection(join(REPO, 'BENCHMARKS.md'), 'store-scale', markdown);
  log(`wrote BENCHMARKS.md (${((performance.now() - wallStart) / 1000).toFixed(0)} s)`);
}

try {
  await main();
} catch (err) {
  if (!interrupted) log(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
} finally {
  await cleanup();
}
