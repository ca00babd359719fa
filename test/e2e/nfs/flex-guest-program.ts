/**
 * Runs inside the qemu guest for test/e2e/flexvolume-nfs-guest.test.ts, as kubelet on a node: it
 * runs the installed flexvolume wrapper (`<pluginDir>/stowage~<driver>/<driver>`, a /bin/sh script
 * that execs the guest's node with the bundled executable) once per call, with kubelet's
 * arguments, directory layout and retries, and records what each call printed (stdout and stderr
 * together, in arrival order, as kubelet reads them), its exit code and how long it took. The
 * kernel NFS client mounts ganesha on the host (10.0.2.2). The host test judges everything; this
 * program only observes, so that a wrong reply is reported rather than hidden by a crash here.
 *
 * It is bundled by the host test (esbuild) into one .mjs without dependencies: only node's own
 * modules are imported, so the payload disk needs no node_modules.
 *
 * argv: <plan.json>. Prints one `RESULT {json}` line (GuestReport).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type FsOutcome,
  fsTry,
  type MountView,
  mountTable,
  ourMounts as ourMountsIn,
  under,
} from '../guest/mount-view.js';

export type { FsOutcome, MountView } from '../guest/mount-view.js';

/** One volume driven through the full kubelet sequence. */
export interface DriverPlan {
  driver: 'nfs' | 'efs';
  /** The PV's name (kubernetes.io/pvOrVolumeName), also the stowage volume name. */
  pv: string;
  /** The PV's own options (spec.flexVolume.options). */
  options: Record<string, string>;
}

/** A mount of a PV whose server never answers; `env` is added to the call's environment. */
export interface HungPlan {
  label: string;
  driver: 'nfs';
  pv: string;
  options: Record<string, string>;
  env?: Record<string, string>;
  /** How many times kubelet tries (it retries after a Failure). */
  attempts: number;
  /**
   * After the attempts, the server comes back: the guest connects to 10.0.2.2:<port>, the host
   * then forwards the held connections (and new ones) to ganesha and answers "released". The guest
   * watches for up to waitMs whether anything still mounts behind the Failure replies.
   */
  release?: { port: number; waitMs: number };
}

export interface GuestPlan {
  pluginDir: string;
  kubeletDir: string;
  /** dataDir of the config: its volumes/ and staging/ must be empty at the end. */
  dataDir: string;
  /** The environment kubelet runs drivers with (PATH etc. are the guest's own). */
  env: Record<string, string>;
  podA: string;
  podB: string;
  drivers: DriverPlan[];
  hung: HungPlan[];
  /** Bound for one call; a call past it is killed and reported with timedOut. */
  callTimeoutMs: number;
}

export interface CallRecord {
  args: string[];
  /** stdout and stderr combined, in the order the bytes arrived. */
  output: string;
  /** Only what went to stderr (must be empty: kubelet would parse it as part of the reply). */
  stderr: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  ms: number;
}

export interface DriverReport {
  driver: string;
  pv: string;
  podDirA: string;
  podDirB: string;
  calls: {
    init: CallRecord;
    mountA: CallRecord;
    mountARetry: CallRecord;
    mountB: CallRecord;
    unmountA: CallRecord;
    unmountARetry: CallRecord;
    unmountB: CallRecord;
  };
  /** Pod A writes a file, pod B reads it and tries to write one (it is mounted read-only). */
  writeA: FsOutcome;
  readB: FsOutcome;
  writeB: FsOutcome;
  /** Our mounts right after both pods were mounted (pod dirs, stowage's mount root, staging). */
  mountsWhileBoth: MountView[];
  /** Pod A's dir after its unmount (before kubelet removes it): must be an empty, plain directory. */
  podDirAAfterUnmount: { mounted: boolean; entries: string[] | string };
  mountsAfterUnmountA: MountView[];
  readBAfterUnmountA: FsOutcome;
  mountsAfterUnmountB: MountView[];
  /** kubelet removes the pod dirs after unmount; rmdir fails on a mount point or a non-empty dir. */
  rmdirA: FsOutcome;
  rmdirB: FsOutcome;
}

export interface HungReport {
  label: string;
  podDir: string;
  attempts: CallRecord[];
  /** Mount helpers still running right after the last reply (pid + cmdline). */
  helpersAfter: string[];
  mountsAfter: MountView[];
  /** With release: what mounted after the server came back, and what the guest cleaned up then. */
  afterRelease?: {
    released: boolean;
    /** Our mounts when the helpers had finished (or waitMs passed). */
    mounts: MountView[];
    helpers: string[];
    ms: number;
    /** Late mounts unmounted and helpers killed here, so later checks see only their own leftovers. */
    cleaned: string[];
  };
}

export interface GuestReport {
  error?: string;
  drivers: DriverReport[];
  hung: HungReport[];
  /** Everything NFS-ish or under kubeletDir/dataDir still mounted at the very end. */
  leftMounted: MountView[];
  /** Mount helpers still running at the very end. */
  helpersAtEnd: string[];
  /** The executable's log (dataDir/flexvolume.log), last lines, for diagnosis. */
  logTail: string;
  /** Guest-side wall clock of the whole program. */
  ms: number;
}

const planPath = process.argv[2];
if (!planPath) throw new Error('usage: flex-guest-program <plan.json>');
const plan = JSON.parse(readFileSync(planPath, 'utf8')) as GuestPlan;
const started = Date.now();

function executable(driver: string): string {
  return join(plan.pluginDir, `stowage~${driver}`, driver);
}

function podDir(podUid: string, driver: string, pv: string): string {
  return join(plan.kubeletDir, 'pods', podUid, 'volumes', `stowage~${driver}`, pv);
}

/** kubelet's options JSON for mount: its own keys, the pod's identity, then the PV's options. */
function mountOptions(pv: string, podUid: string, readwrite: 'ro' | 'rw', own: Record<string, string>) {
  return JSON.stringify({
    'kubernetes.io/fsType': '',
    'kubernetes.io/readwrite': readwrite,
    'kubernetes.io/pvOrVolumeName': pv,
    'kubernetes.io/pod.name': `pod-${podUid.slice(0, 8)}`,
    'kubernetes.io/pod.namespace': 'default',
    'kubernetes.io/pod.uid': podUid,
    'kubernetes.io/serviceAccount.name': 'default',
    ...own,
  });
}

/** One driver call as kubelet makes it: a fresh process, output collected whole, no stdin. */
function call(driver: string, args: string[], env: Record<string, string> = {}): Promise<CallRecord> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const errChunks: Buffer[] = [];
    let timedOut = false;
    const child = spawn(executable(driver), args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...plan.env, ...env },
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, plan.callTimeoutMs);
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => {
      chunks.push(b);
      errChunks.push(b);
    });
    const done = (exitCode: number | null, signal: string | null, extra = '') => {
      clearTimeout(timer);
      resolve({
        args,
        output: Buffer.concat(chunks).toString('utf8') + extra,
        stderr: Buffer.concat(errChunks).toString('utf8'),
        exitCode,
        signal,
        timedOut,
        ms: Date.now() - t0,
      });
    };
    child.on('error', (err) => done(null, null, `[spawn failed: ${err.message}]`));
    // 'close' (not 'exit'): all output has been read by then.
    child.on('close', (code, signal) => done(code, signal));
  });
}

/** Mounts that are ours to care about: NFS ones anywhere, and anything under kubelet's or stowage's dirs. */
function ourMounts(): MountView[] {
  return ourMountsIn(plan.kubeletDir, plan.dataDir);
}

function isMounted(path: string): boolean {
  return mountTable().some((m) => m.mountPoint === path);
}

/** Processes whose command is mount, umount or a mount helper (pid and command line). */
function mountHelpers(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const cmd = (argv[0] ?? '').split('/').pop() ?? '';
      if (/^u?mount(\.nfs4?)?$/.test(cmd)) out.push(`${pid} ${argv.join(' ')}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** kubelet makes the pod's volume directory (0750) before calling mount. */
function kubeletMkdir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
}

async function driveVolume(d: DriverPlan): Promise<DriverReport> {
  const a = podDir(plan.podA, d.driver, d.pv);
  const b = podDir(plan.podB, d.driver, d.pv);
  const init = await call(d.driver, ['init']);

  kubeletMkdir(a);
  const optsA = mountOptions(d.pv, plan.podA, 'rw', d.options);
  const mountA = await call(d.driver, ['mount', a, optsA]);
  // kubelet retries after a lost reply or a restart: the same call again.
  const mountARetry = await call(d.driver, ['mount', a, optsA]);
  const writeA = fsTry(() => {
    writeFileSync(join(a, 'hello.txt'), `written by pod A through stowage~${d.driver}\n`);
    return undefined;
  });

  kubeletMkdir(b);
  const mountB = await call(d.driver, ['mount', b, mountOptions(d.pv, plan.podB, 'ro', d.options)]);
  const mountsWhileBoth = ourMounts();
  const readB = fsTry(() => readFileSync(join(b, 'hello.txt'), 'utf8'));
  const writeB = fsTry(() => {
    writeFileSync(join(b, 'from-b.txt'), 'pod B must not be able to write this\n');
    return undefined;
  });

  const unmountA = await call(d.driver, ['unmount', a]);
  const unmountARetry = await call(d.driver, ['unmount', a]);
  const podDirAAfterUnmount = {
    mounted: isMounted(a),
    entries: (() => {
      try {
        return readdirSync(a);
      } catch (err) {
        return (err as NodeJS.ErrnoException).code ?? 'error';
      }
    })(),
  };
  const rmdirA = fsTry(() => {
    rmdirSync(a);
    return undefined;
  });
  const mountsAfterUnmountA = ourMounts();
  const readBAfterUnmountA = fsTry(() => readFileSync(join(b, 'hello.txt'), 'utf8'));

  const unmountB = await call(d.driver, ['unmount', b]);
  const rmdirB = fsTry(() => {
    rmdirSync(b);
    return undefined;
  });
  const mountsAfterUnmountB = ourMounts();
  return {
    driver: d.driver,
    pv: d.pv,
    podDirA: a,
    podDirB: b,
    calls: { init, mountA, mountARetry, mountB, unmountA, unmountARetry, unmountB },
    writeA,
    readB,
    writeB,
    mountsWhileBoth,
    podDirAAfterUnmount,
    mountsAfterUnmountA,
    readBAfterUnmountA,
    mountsAfterUnmountB,
    rmdirA,
    rmdirB,
  };
}

async function driveHung(h: HungPlan): Promise<HungReport> {
  const dir = podDir(plan.podA, h.driver, h.pv);
  kubeletMkdir(dir);
  const attempts: CallRecord[] = [];
  for (let i = 0; i < h.attempts; i++) {
    attempts.push(
      await call(h.driver, ['mount', dir, mountOptions(h.pv, plan.podA, 'rw', h.options)], h.env),
    );
  }
  const report: HungReport = {
    label: h.label,
    podDir: dir,
    attempts,
    helpersAfter: mountHelpers(),
    mountsAfter: ourMounts(),
  };
  if (h.release) report.afterRelease = await afterRelease(h.release);
  // kubelet gives up on the pod eventually and removes the directory it made.
  try {
    rmdirSync(dir);
  } catch {
    // reported through mountsAfter / leftMounted
  }
  return report;
}

/** Asks the host to let the "hung" server answer, then watches what the leftovers do. */
async function afterRelease(r: { port: number; waitMs: number }): Promise<HungReport['afterRelease']> {
  const released = await new Promise<boolean>((resolve) => {
    const sock = createConnection({ host: '10.0.2.2', port: r.port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(false);
    }, 10_000);
    let got = '';
    sock.on('data', (b: Buffer) => {
      got += b.toString();
      if (got.includes('released')) {
        clearTimeout(timer);
        sock.end();
        resolve(true);
      }
    });
    sock.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  const t0 = Date.now();
  while (Date.now() - t0 < r.waitMs && mountHelpers().length > 0) await sleep(250);
  const mounts = ourMounts();
  const helpers = mountHelpers();
  const cleaned: string[] = [];
  for (const h of helpers) {
    const pid = Number(h.split(' ')[0]);
    try {
      process.kill(pid, 'SIGKILL');
      cleaned.push(`killed ${h}`);
    } catch {
      // finished meanwhile
    }
  }
  for (const m of mounts.filter((x) => under(x.mountPoint, plan.dataDir)).reverse()) {
    try {
      execFileSync('umount', ['-l', m.mountPoint], { timeout: 10_000, stdio: 'ignore' });
      cleaned.push(`unmounted ${m.mountPoint}`);
    } catch (err) {
      cleaned.push(`could not unmount ${m.mountPoint}: ${(err as Error).message}`);
    }
  }
  return { released, mounts, helpers, ms: Date.now() - t0, cleaned };
}

function logTail(): string {
  try {
    return readFileSync(join(plan.dataDir, 'flexvolume.log'), 'utf8').split('\n').slice(-60).join('\n');
  } catch (err) {
    return `(no log: ${(err as Error).message})`;
  }
}

const report: GuestReport = { drivers: [], hung: [], leftMounted: [], helpersAtEnd: [], logTail: '', ms: 0 };
try {
  // Sanity: the wrapper kubelet would run is where the plan says, and executable.
  for (const d of new Set([...plan.drivers.map((x) => x.driver), ...plan.hung.map((x) => x.driver)])) {
    if ((statSync(executable(d)).mode & 0o111) === 0) throw new Error(`${executable(d)} is not executable`);
  }
  for (const d of plan.drivers) report.drivers.push(await driveVolume(d));
  for (const h of plan.hung) report.hung.push(await driveHung(h));
} catch (err) {
  report.error = (err as Error).stack ?? String(err);
}
report.leftMounted = ourMounts();
report.helpersAtEnd = mountHelpers();
report.logTail = logTail();
report.ms = Date.now() - started;
process.stdout.write(`RESULT ${JSON.stringify(report)}\n`);
