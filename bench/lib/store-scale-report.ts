/**
 * The tables and the BENCHMARKS.md section of bench/store-scale.ts, with each of issue 16's
 * targets judged against the run's own numbers.
 */
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import type { Summary } from './harness.js';

export interface OpResult extends Summary {
  n: number;
  backend: 'sqlite' | 'etcd';
  op: string;
}

export interface SizeRun {
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
  /** The etcd daemon again with node's default heap sizing (the rest run with deploy/node-options.ts). */
  nodeDefaults: { rss: number; hwm: number; settled: number };
}

/** The run's shape, as bench/store-scale.ts set it (quoted in the Method). */
export interface ReportSettings {
  focusN: number;
  lagSamples: number;
  hosts: number;
  host: string;
  mountedShare: number;
  rounds: number;
  sentMetric: string;
  /** What the daemons ran with (deploy/node-options.ts). */
  nodeOptions: string;
}

const ms = (us: number) => `${(us / 1000).toFixed(2)} ms`;
const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
const fmtN = (n: number) => n.toLocaleString('en-US');
function table(headers: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

export function render(
  runs: SizeRun[],
  wallS: number,
  s: ReportSettings,
): { text: string; markdown: string } {
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
      "etcd daemon with node's default heap sizing: RSS (peak), after ≥ 5 s idle",
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
      `${mb(r.nodeDefaults.rss)} (${mb(r.nodeDefaults.hwm)}), ${mb(r.nodeDefaults.settled)}`,
      `${(r.migrateMs / 1000).toFixed(2)} s`,
    ]),
  );
  const focus = runs.find((r) => r.n === s.focusN);
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
    `${mb(largest.rss.etcd.rss)} right after the requests (peak ${mb(largest.rss.etcd.hwm)}; ${mb(largest.settled.etcd)} after ≥ 5 s idle; SQLite's ${mb(largest.rss.sqlite.rss)}; with node's default heap sizing ${mb(largest.nodeDefaults.rss)})${largest.n < 100_000 ? '; the 100,000 run is the soak size: STOWAGE_BENCH_VOLUMES=100000' : ''}`,
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
    ? `Five etcd daemons (separate processes, one store each, hosts of their own) listing ${fmtN(s.focusN)} volumes at once, ${focus.five.lists} Lists each, one at a time per daemon: p50 ${ms(focus.five.medianUs)}, p90 ${ms(focus.five.p90Us)}, p99 ${ms(focus.five.p99Us)} (one daemon alone: ${ms(find(focus, 'etcd', 'List').medianUs)}).`
    : '';
  const lag = focus?.lag
    ? `Cross-host visibility lag (${s.lagSamples} writes at ${fmtN(s.focusN)} volumes): one store writes a volume, a cached store in another process polls Get every 1 ms until it answers it; from just before the write to that answer: p50 ${ms(focus.lag.medianUs)}, p90 ${ms(focus.lag.p90Us)}, p99 ${ms(focus.lag.p99Us)}.`
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

- Per N, ${fmtN(s.mountedShare * 100)}% of the volumes mounted, the mounts spread over ${s.hosts} hosts (the daemons run
  as ${s.host}, which holds 1/${s.hosts} of them). SQLite is seeded through \`SqliteStore\`; etcd by
  \`migrateStore\` from that SQLite file (what \`stowage state migrate\` runs), which is the migrate time.
- Two real daemons (\`node bin/stowage.js daemon\`, one on each store) run at once; requests go one at a time
  over a keep-alive connection, as dockerd sends them, in ${s.rounds} rounds alternating store and op. Get and
  Path ask for random existing names (fixed seed). Both daemons' List replies are checked to be
  byte-identical before timing.
- etcd traffic: \`${s.sentMetric}\` and the Range requests etcd served (\`grpc_server_handled_total\`), from
  etcd's own /metrics before and after the warm Lists (200; 20 at 100,000), next to the background
  traffic expected in as long (lease keepalives, the read caches' watch heartbeat once a second), from
  the rate over an idle window of at least 5 s. Met: no request, and under 1 B per List beyond it. "Before the cache" is the store call the daemon made per List until now
  (\`EtcdStore.listVolumeSummaries\` without the read cache, in the bench process).
- The daemons run as every deploy form runs them, with \`NODE_OPTIONS="${s.nodeOptions}"\`
  (deploy/node-options.ts: the image's ENV, the managed plugins' env, the systemd unit). The baseline of
  what that changes, in the same run: after the rest, the etcd daemon is started again on the same store
  and host with node's default heap sizing, goes through the same start-up (its reconcile drops this
  host's mount records, the bench writes them again) and answers the same Get, Path and List requests.
- RSS: VmRSS (VmHWM) of the daemon processes right after the timed requests, and VmRSS again after the
  idle window (at least 5 s without a request). The target is judged on the first.
- 100,000 volumes: \`STOWAGE_BENCH_VOLUMES=100000 npm run bench\` (a soak-size run; not part of CI).
`;
  return { text: `${latency}\n\n${etcdTable}\n\n${five}\n${lag}\n\n${targets}`, markdown };
}
