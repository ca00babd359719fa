/**
 * Plumbing for bench/socket-latency.ts: child processes with bounded start/stop, a keep-alive
 * HTTP-over-unix-socket client that times each request, percentiles, and /proc memory readings.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

// ---------------------------------------------------------------------------------------------
// Child processes

export interface Child {
  name: string;
  proc: ChildProcess;
  /** The last bytes the child wrote to stdout/stderr, for error messages. */
  output(): string;
}

const OUTPUT_KEEP = 16 * 1024;

/** Starts `node <args>` in `cwd`. Output is drained (a full pipe would stall the child) and its tail kept. */
export function startNode(name: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_KEEP);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  // A spawn failure (e.g. ENOENT) is reported through exitCode/output checks; don't crash on it.
  proc.on('error', (err) => keep(Buffer.from(`spawn error: ${err.message}\n`)));
  return { name, proc, output: () => tail };
}

function exited(c: Child): boolean {
  return c.proc.exitCode !== null || c.proc.signalCode !== null;
}

function waitExit(c: Child, ms: number): Promise<boolean> {
  if (exited(c)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      c.proc.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    c.proc.once('exit', onExit);
  });
}

/** SIGTERM, then SIGKILL if the child is still there after `graceMs`. Never waits unboundedly. */
export async function stopChild(c: Child, graceMs = 5000): Promise<void> {
  if (exited(c) || c.proc.pid === undefined) return;
  c.proc.kill('SIGTERM');
  if (await waitExit(c, graceMs)) return;
  process.stderr.write(`bench: ${c.name} ignored SIGTERM for ${graceMs} ms; sending SIGKILL\n`);
  c.proc.kill('SIGKILL');
  await waitExit(c, 2000);
}

function tryConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s: Socket = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 500);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/**
 * Waits until `socketPath` accepts connections. The file appearing is not enough: the daemon
 * chmods it right after listen, and a stale file could exist. Fails early if the child dies.
 */
export async function waitForSocket(c: Child, socketPath: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  const deadline = started + timeoutMs;
  while (performance.now() < deadline) {
    if (exited(c)) {
      throw new Error(
        `${c.name} exited (code ${c.proc.exitCode}, signal ${c.proc.signalCode}) before serving ${socketPath}:\n${c.output()}`,
      );
    }
    if (await tryConnect(socketPath)) return performance.now() - started;
    await sleep(25);
  }
  throw new Error(`${c.name} did not serve ${socketPath} within ${timeoutMs} ms:\n${c.output()}`);
}

/** Resident and peak-resident memory of a process, in bytes, from /proc/<pid>/status. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m?.[1]) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

// ---------------------------------------------------------------------------------------------
// Client

export interface Reply {
  status: number;
  body: string;
  /** Request start to last response byte, in nanoseconds. */
  ns: bigint;
}

/**
 * One keep-alive connection, requests strictly one after another: the way dockerd's plugin client
 * talks to a plugin. So the numbers are per-request service time, not connection setup or queueing.
 */
export class PluginClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private readonly sockets = new WeakSet<object>();
  /** Connections opened so far; stays at 1 when keep-alive works as intended. */
  connections = 0;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 10_000,
  ) {}

  post(path: string, body: string): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const started = process.hrtime.bigint();
      const req = request(
        {
          socketPath: this.socketPath,
          agent: this.agent,
          method: 'POST',
          path,
          // dockerd sends its plugin Accept header and no Content-Type.
          headers: {
            Accept: 'application/vnd.docker.plugins.v1.2+json',
            'Content-Length': Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const ns = process.hrtime.bigint() - started;
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ns });
          });
          res.on('error', reject);
        },
      );
      req.on('socket', (s) => {
        if (!this.sockets.has(s)) {
          this.sockets.add(s);
          this.connections++;
        }
      });
      req.setTimeout(this.timeoutMs, () =>
        req.destroy(new Error(`${path} on ${this.socketPath}: no reply within ${this.timeoutMs} ms`)),
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * Sends `count` requests one at a time and returns their latencies in microseconds. Every reply
 * is checked (status 200, JSON with an empty Err) after its clock has stopped, so a broken setup
 * fails the run instead of producing fast numbers for error replies.
 */
export async function timeRequests(
  client: PluginClient,
  path: string,
  bodyFor: (i: number) => string,
  count: number,
): Promise<Float64Array> {
  const us = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const reply = await client.post(path, bodyFor(i));
    us[i] = Number(reply.ns) / 1000;
    checkReply(path, reply);
  }
  return us;
}

export function checkReply(path: string, reply: Reply): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(reply.body);
  } catch {
    throw new Error(`${path}: reply is not JSON (HTTP ${reply.status}): ${reply.body.slice(0, 200)}`);
  }
  const err = (parsed as { Err?: unknown }).Err;
  if (reply.status !== 200 || err !== '') {
    throw new Error(`${path}: HTTP ${reply.status}, Err ${JSON.stringify(err)}`);
  }
  return parsed as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Statistics

export interface Summary {
  count: number;
  medianUs: number;
  p90Us: number;
  p99Us: number;
}

/** Nearest-rank percentiles: each reported value is one that was actually measured. */
export function summarize(us: Float64Array): Summary {
  const sorted = Float64Array.from(us).sort();
  const at = (p: number) => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
  return { count: sorted.length, medianUs: at(0.5), p90Us: at(0.9), p99Us: at(0.99) };
}

/** Deterministic PRNG (mulberry32), so every run asks for the same sequence of names. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
