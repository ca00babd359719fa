/**
 * The mount path (`npm run bench`, or alone: `node --import tsx bench/mount-path.ts`, as root):
 * one Docker-plugin Mount + Unmount of a `local` volume through the real daemon's socket, next to
 * the same work done by the raw tools from a shell script, on real loop devices and real mounts.
 *
 * - floor: a bash script runs `losetup --find --show IMG; mount DEV DIR; umount DIR;
 *   losetup -d DEV` and times itself with bash's own clock ($EPOCHREALTIME, no process), so the
 *   floor is the four tools and nothing else.
 * - daemon: `POST /VolumeDriver.Mount` then `POST /VolumeDriver.Unmount` over the plugin socket
 *   (HTTP over the unix socket, one keep-alive connection, as dockerd talks to a plugin), timed
 *   from request start to the last byte of each reply.
 * - with `--baseline DIR` (a checkout of another commit, built): that code's daemon too, in the
 *   same rounds, so a change is measured against the same floors.
 *
 * Rounds interleave the variants (their order rotates), so a slow patch of the machine hits each
 * alike. `docker run -v` through stowage-local against Docker's built-in `local` is
 * bench/deploy.ts's (it builds the image and the plugins), not repeated here.
 * Writes the `mount-path` section of BENCHMARKS.md.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, release } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanups, runBench } from './lib/cleanups.js';
import { checkReply, PluginClient, startNode, stopChild, summarize, waitForSocket } from './lib/harness.js';
import { writeSection } from './lib/sections.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.BENCH_MOUNT_ROUNDS ?? 60);
const WARMUP = 5;
const SIZE = '64M';
const VOLUME = 'bench-mountpath';
const START_TIMEOUT_MS = 30_000;
/** The goal of issue 14: Mount + Unmount at most this many times the raw tools. */
const GOAL = 1.5;

const FLOOR_SCRIPT = `#!/bin/bash
set -euo pipefail
img=$1 dir=$2
t0=$EPOCHREALTIME
dev=$(losetup --find --show -- "$img")
mount -- "$dev" "$dir"
umount -- "$dir"
losetup --detach "$dev"
t1=$EPOCHREALTIME
/bin/true
t2=$EPOCHREALTIME
echo "$t0 $t1 $t2"
`;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 60_000 }).trim();
}

// ---------------------------------------------------------------------------------------------
// Variants

/**
 * What starting one process costs (`/bin/true`, start to exit) from bash and from node: the daemon
 * must start each tool from a node process, whose fork copies far more page tables than bash's.
 */
const processStarts = { bash: [] as number[], node: [] as number[] };

function nodeProcessStart(): Promise<number> {
  return new Promise((done, fail) => {
    const started = performance.now();
    // The options the daemon's ProcessRunner uses.
    const child = spawn('/bin/true', [], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.resume();
    child.stderr.resume();
    child.on('error', fail);
    child.on('close', () => done((performance.now() - started) * 1000));
  });
}

function memoryOf(pid: number): string {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return `${(kb('VmRSS') / 1024).toFixed(0)} MB resident, ${(kb('VmPTE') / 1024).toFixed(1)} MB of page tables`;
}

interface Variant {
  name: string;
  /** The daemon's process, for its memory figures. */
  pid?: number;
  /** One Mount + Unmount; returns [mount µs, unmount µs]. */
  round(i: number): Promise<[number, number]>;
}

function floorVariant(dir: string): Variant {
  const img = join(dir, 'floor.img');
  const target = join(dir, 'floor-mnt');
  const script = join(dir, 'floor.sh');
  return {
    name: 'raw tools (shell script)',
    async round() {
      const res = spawnSync('/bin/bash', [script, img, target], { encoding: 'utf8', timeout: 30_000 });
      if (res.status !== 0) throw new Error(`floor script failed (${res.status}): ${res.stderr}`);
      const [t0, t1, t2] = res.stdout.trim().split(' ').map(Number);
      if (t0 === undefined || t1 === undefined || t2 === undefined || !(t2 >= t1 && t1 >= t0)) {
        throw new Error(`floor printed ${res.stdout}`);
      }
      processStarts.bash.push((t2 - t1) * 1e6);
      // The script times all four tools at once; the split is not measured.
      return [(t1 - t0) * 1e6, 0];
    },
  };
}

async function prepareFloor(dir: string): Promise<void> {
  const img = join(dir, 'floor.img');
  await writeFile(join(dir, 'floor.sh'), FLOOR_SCRIPT, { mode: 0o755 });
  await mkdir(join(dir, 'floor-mnt'));
  sh('truncate', ['-s', SIZE, img]);
  sh('mkfs.ext4', ['-q', '-F', img]);
}

/** The real daemon of the checkout at `root` (built), serving `local` on its own socket. */
async function daemonVariant(name: string, root: string, dir: string): Promise<Variant> {
  const dataDir = join(dir, 'data');
  const sockDir = join(dir, 'sock');
  const configFile = join(dir, 'config.yaml');
  await mkdir(dataDir, { recursive: true });
  // An empty config file: this machine's /etc/stowage/config.yaml, if any, must not leak in.
  await writeFile(configFile, '');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STOWAGE_')));
  const daemon = startNode(
    name,
    [
      '--no-warnings',
      join(root, 'bin', 'stowage.js'),
      '--config',
      configFile,
      '--data-dir',
      dataDir,
      '--socket-dir',
      sockDir,
      '--host-id',
      'bench-host',
      'daemon',
    ],
    root,
    env,
  );
  cleanups.push(() => stopChild(daemon));
  const socket = join(sockDir, 'stowage-local.sock');
  await waitForSocket(daemon, socket, START_TIMEOUT_MS);
  const client = new PluginClient(socket, 60_000);
  cleanups.push(async () => client.close());
  const post = async (op: string, body: object) => {
    const reply = await client.post(`/VolumeDriver.${op}`, JSON.stringify(body));
    return { us: Number(reply.ns) / 1000, body: checkReply(op, reply) };
  };
  await post('Create', { Name: VOLUME, Opts: { size: SIZE } });
  cleanups.push(() => client.post('/VolumeDriver.Remove', JSON.stringify({ Name: VOLUME })));
  return {
    name,
    ...(daemon.proc.pid === undefined ? {} : { pid: daemon.proc.pid }),
    async round() {
      const id = randomBytes(32).toString('hex'); // a container id, as dockerd sends
      const m = await post('Mount', { Name: VOLUME, ID: id });
      const mountpoint = String(m.body.Mountpoint ?? '');
      // Checked outside the clock: a fast error reply must fail the run, not improve it.
      if (!(await mounted(mountpoint))) throw new Error(`${name}: ${mountpoint} is not mounted after Mount`);
      const u = await post('Unmount', { Name: VOLUME, ID: id });
      if (await mounted(mountpoint)) throw new Error(`${name}: ${mountpoint} still mounted after Unmount`);
      return [m.us, u.us];
    },
  };
}

async function mounted(path: string): Promise<boolean> {
  if (path === '') return false;
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((l) => l.split(' ')[4] === path);
}

// ---------------------------------------------------------------------------------------------

interface Row {
  name: string;
  total: ReturnType<typeof summarize>;
  mount: ReturnType<typeof summarize>;
  unmount: ReturnType<typeof summarize>;
}

const fmt = (us: number) => `${(us / 1000).toFixed(2)} ms`;

interface ProcessStarts {
  bash: ReturnType<typeof summarize>;
  node: ReturnType<typeof summarize>;
  memory: string[];
}

function render(
  rows: Row[],
  starts: ProcessStarts,
  facts: { date: string; wallS: number; load: [number, number]; baseline?: string },
): string {
  const floor = rows[0]!;
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const table = [
    line(['Mount + Unmount by', 'Median', 'p90', 'Median / floor', 'p90 / floor', 'Mount', 'Unmount']),
    line(['---', '---', '---', '---', '---', '---', '---']),
    ...rows.map((r, i) =>
      line([
        r.name,
        fmt(r.total.medianUs),
        fmt(r.total.p90Us),
        `${(r.total.medianUs / floor.total.medianUs).toFixed(2)}×`,
        `${(r.total.p90Us / floor.total.p90Us).toFixed(2)}×`,
        i === 0 ? '—' : fmt(r.mount.medianUs),
        i === 0 ? '—' : fmt(r.unmount.medianUs),
      ]),
    ),
  ].join('\n');
  const daemon = rows.find((r) => r.name === 'stowage daemon')!;
  const ratio = daemon.total.medianUs / floor.total.medianUs;
  return `## Mount path: Docker-plugin Mount + Unmount of a \`local\` volume

Generated by \`bench/mount-path.ts\` (\`npm run bench\`, as root) from one real run; do not edit
by hand, rerun instead.

Machine: ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), Linux ${release()}, Node ${process.version}. Run on ${facts.date}: ${ROUNDS} rounds after ${WARMUP} warm-up rounds, variants interleaved (order rotating), took ${facts.wallS.toFixed(0)} s; 1-minute load average ${facts.load[0].toFixed(2)} before, ${facts.load[1].toFixed(2)} after (other work on the machine moves both sides, the ratio less than the times).

${table}

| Target | Measured | Status |
| --- | --- | --- |
| daemon Mount + Unmount ≤ ${GOAL}× the raw tools (medians) | ${ratio.toFixed(2)}× (${fmt(daemon.total.medianUs)} vs ${fmt(floor.total.medianUs)}) | ${ratio <= GOAL ? 'met' : '**not met**'} |

- floor: a bash script runs \`losetup --find --show IMG\`, \`mount DEV DIR\`, \`umount DIR\`,
  \`losetup -d DEV\` on a ${SIZE} ext4 image and times itself with \`$EPOCHREALTIME\` (bash's clock:
  no process), so bash's own start is not counted.
- daemon: \`node bin/stowage.js daemon\` (the default log level, info; SQLite store), a ${SIZE}
  \`local\` volume created once and formatted at the first (warm-up) Mount; each round sends
  \`/VolumeDriver.Mount\` and \`/VolumeDriver.Unmount\` with a fresh ID over one keep-alive
  connection, as dockerd does, and counts request start to the last reply byte of both. Outside
  the clock every round checks that the mountpoint is in /proc/self/mountinfo after Mount and
  gone after Unmount.${facts.baseline ? `\n- ${rows.find((r) => r.name.startsWith('baseline'))?.name}: the same daemon built from ${facts.baseline}, in the same rounds.` : ''}

### What one process costs

| Start \`/bin/true\` and wait for its exit, from | Median | p90 |
| --- | --- | --- |
| bash (in the floor script) | ${fmt(starts.bash.medianUs)} | ${fmt(starts.bash.p90Us)} |
| node (this bench's process, the daemon's spawn options) | ${fmt(starts.node.medianUs)} | ${fmt(starts.node.p90Us)} |

Memory at the end: ${starts.memory.join('; ')}. A fork copies the parent's page tables, so each
tool the daemon starts costs it more than the same tool costs bash; the daemon starts three per
Mount + Unmount (\`losetup --find --show\`, \`mount\`, \`umount -d\`) where the script starts four.
In this run the daemon's Mount + Unmount took ${fmt(daemon.total.medianUs - floor.total.medianUs)} more than the
floor, and three process starts from node took ${fmt(3 * (starts.node.medianUs - starts.bash.medianUs))} more than from bash.

- Percentiles are nearest-rank. \`docker run -v\` with stowage-local against Docker's built-in
  \`local\` is measured by bench/deploy.ts (its section below).
`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('run the mount-path benchmark as root (loop devices, mounts)');
  const args = process.argv.slice(2);
  const at = args.indexOf('--baseline');
  const baseline = at >= 0 ? resolve(args[at + 1] ?? '') : undefined;
  if (baseline) await access(join(baseline, 'dist', 'src', 'cli', 'main.js'));
  const started = performance.now();
  const loadBefore = loadavg()[0]!;
  const dir = await mkdtemp('/tmp/stowage-bench-mountpath-');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));

  await prepareFloor(dir);
  const variants: Variant[] = [floorVariant(dir)];
  await mkdir(join(dir, 'current'));
  variants.push(await daemonVariant('stowage daemon', REPO, join(dir, 'current')));
  if (baseline) {
    await mkdir(join(dir, 'baseline'));
    variants.push(await daemonVariant('baseline daemon', baseline, join(dir, 'baseline')));
  }

  const samples = variants.map(() => ({
    total: [] as number[],
    mount: [] as number[],
    unmount: [] as number[],
  }));
  for (let r = 0; r < WARMUP + ROUNDS; r++) {
    for (let k = 0; k < variants.length; k++) {
      const i = (r + k) % variants.length;
      const [m, u] = await variants[i]!.round(r);
      if (r < WARMUP) continue;
      samples[i]!.total.push(m + u);
      samples[i]!.mount.push(m);
      samples[i]!.unmount.push(u);
    }
    if (r >= WARMUP) processStarts.node.push(await nodeProcessStart());
  }
  const memory = variants
    .filter((v) => v.pid !== undefined)
    .map((v) => `${v.name}: ${memoryOf(v.pid!)}`)
    .concat([`this bench (node): ${memoryOf(process.pid)}`]);
  // No loop device may be left behind by either side.
  const leftover = sh('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])
    .split('\n')
    .filter((l) => l.includes(dir));
  if (leftover.length > 0) throw new Error(`loop devices left attached: ${leftover.join('; ')}`);

  const rows: Row[] = variants.map((v, i) => ({
    name: v.name,
    total: summarize(Float64Array.from(samples[i]!.total)),
    mount: summarize(Float64Array.from(samples[i]!.mount)),
    unmount: summarize(Float64Array.from(samples[i]!.unmount)),
  }));
  const starts = {
    bash: summarize(Float64Array.from(processStarts.bash)),
    node: summarize(Float64Array.from(processStarts.node)),
    memory,
  };
  const markdown = render(rows, starts, {
    date: new Date().toISOString(),
    wallS: (performance.now() - started) / 1000,
    load: [loadBefore, loadavg()[0]!],
    ...(baseline ? { baseline: process.env.BENCH_BASELINE_LABEL ?? baseline } : {}),
  });
  process.stdout.write(`${markdown}\n`);
  if (!process.env.BENCH_NO_WRITE) {
    await writeSection(join(REPO, 'BENCHMARKS.md'), 'mount-path', markdown);
    process.stderr.write('bench: wrote the mount-path section of BENCHMARKS.md\n');
  }
}

await runBench(main);
