import { pollUntil } from '../base/backoff.js';
import { isStowageError, StowageError } from '../base/errors.js';
import type { StateStore } from '../state/store.js';

export interface VolumeLocksOptions {
  host: string;
  /** How long an operation waits for another one on the same volume before it answers BUSY. */
  waitMs: number;
  /** Expiry of a store lock, so a crashed holder on another host cannot block a volume forever. */
  ttlMs: number;
  /** Whether a process of this host still runs; a dead holder's lock is broken at once. */
  isProcessAlive?: (pid: number) => boolean;
  /** Hears of a store lock that could not be released (it then expires after ttlMs). */
  onUnlockError?: (volume: string, err: Error) => void;
  /**
   * Hears how long each acquisition of `op` waited and whether it ended in BUSY (metrics). A store
   * failure while waiting is not reported here: the store's own metrics count it.
   */
  onWait?: (op: string, seconds: number, busy: boolean) => void;
}

interface Owner {
  host: string;
  pid: number;
  op: string;
  /** Which process of that pid: differs between a process and a later one that got the same pid. */
  incarnation?: string;
}

/**
 * This process's lock owners: `host|pid|op|sequence|incarnation`. An owner only has to differ from
 * every other owner, not be unguessable (owners are stored in the open), so no node:crypto, which
 * would cost the flexvolume executable's every call ~2.5 ms to load: V8 seeds Math.random from the
 * OS in each process, and with the start time it tells this process from an earlier one that had
 * the same pid (pid 1 of a restarted container); the sequence tells this process's operations apart.
 */
const INCARNATION = `${Date.now().toString(36)}${Math.floor(Math.random() * 2 ** 48).toString(36)}`;
let sequence = 0;

/**
 * Per-volume mutual exclusion at two levels: in this process (a map of held volumes) and across
 * processes and hosts (a try-lock in the state store). Waits are bounded: a conflicting operation
 * gets BUSY with the holder named, never an unbounded queue.
 */
export class VolumeLocks {
  private readonly held = new Map<string, { op: string; released: Promise<void> }>();

  constructor(
    private readonly store: StateStore,
    private readonly opts: VolumeLocksOptions,
  ) {}

  async withLock<T>(volume: string, op: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const deadline = Date.now() + this.opts.waitMs;
    const refused = (err: unknown): never => {
      if (isStowageError(err, 'BUSY')) this.reportWait(op, started, true);
      throw err;
    };
    const release = await this.acquireLocal(volume, op, deadline).catch(refused);
    const owner = `${this.opts.host}|${process.pid}|${op}|${(++sequence).toString(36)}|${INCARNATION}`;
    const key = `volume/${volume}`;
    try {
      await this.acquireStore(volume, key, owner, op, deadline).catch(refused);
      this.reportWait(op, started, false);
      try {
        return await fn();
      } finally {
        await this.store.unlock(key, owner).catch((err: Error) => this.opts.onUnlockError?.(volume, err));
      }
    } finally {
      this.held.delete(volume);
      release();
    }
  }

  private reportWait(op: string, started: number, busy: boolean): void {
    this.opts.onWait?.(op, (performance.now() - started) / 1000, busy);
  }

  /** Waits for the volume to be free in this process and takes it in the same synchronous step. */
  private async acquireLocal(volume: string, op: string, deadline: number): Promise<() => void> {
    for (;;) {
      const cur = this.held.get(volume);
      if (!cur) {
        let release!: () => void;
        this.held.set(volume, { op, released: new Promise<void>((r) => (release = r)) });
        return release;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw busy(volume, op, { host: this.opts.host, pid: process.pid, op: cur.op });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([cur.released, new Promise((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
  }

  private async acquireStore(volume: string, key: string, owner: string, op: string, deadline: number) {
    let lastHolder: Owner | undefined;
    try {
      await pollUntil(
        async () => {
          const res = await this.store.tryLock(key, owner, this.opts.ttlMs);
          if (res.acquired) return true;
          lastHolder = res.holder ? parseOwner(res.holder.owner) : undefined;
          if (lastHolder && res.holder && this.holderIsDead(lastHolder)) {
            await this.store.breakLock(key, res.holder.owner);
          }
          return undefined;
        },
        {
          timeoutMs: Math.max(0, deadline - Date.now()),
          initialDelayMs: 5,
          maxDelayMs: 250,
          what: `lock ${key}`,
        },
      );
    } catch (err) {
      if (isStowageError(err, 'TIMEOUT')) throw busy(volume, op, lastHolder);
      throw err;
    }
  }

  private holderIsDead(holder: Owner): boolean {
    if (holder.host !== this.opts.host || !Number.isInteger(holder.pid)) return false;
    // Our pid: ours if this process wrote it, else left by an earlier process that had the same
    // pid (pid 1 of a container restarted after a crash), which must not block us until the TTL.
    if (holder.pid === process.pid) return holder.incarnation !== INCARNATION;
    return !(this.opts.isProcessAlive ?? processAlive)(holder.pid);
  }
}

function parseOwner(owner: string): Owner | undefined {
  const [host, pid, op, , incarnation] = owner.split('|');
  if (!host || !pid || !op) return undefined;
  return { host, pid: Number(pid), op, ...(incarnation ? { incarnation } : {}) };
}

function busy(volume: string, op: string, holder?: Owner): StowageError {
  const who = holder ? ` (${holder.op} by process ${holder.pid} on host ${holder.host})` : '';
  return new StowageError(
    'BUSY',
    `volume ${volume} is busy with another operation${who}; ${op} was not started. Try again in a few seconds.`,
  );
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
