import { setTimeout as sleep } from 'node:timers/promises';
import { CompareResult, CompareTarget, type Etcd3, type IKeyValue, type IRequestOp } from 'etcd3';
import { StowageError } from '../base/errors.js';

/** A key's value and the revision it was last modified at (what a compare-and-swap checks). */
export interface Kv {
  value: string;
  mod: string;
}

/** What a read-modify-write decides from the current value: the ops to apply (none: done) and the answer. */
export interface CasDecision<T> {
  ops?: IRequestOp[] | undefined;
  result: T;
}

/** Compare-and-swap tries before a read-modify-write gives up with BUSY (each is one round trip). */
export const MAX_CAS_ATTEMPTS = 32;

/** The few etcd primitives the store is built from, on raw KV requests (absolute keys, JSON values). */
export class EtcdKv {
  constructor(private readonly client: Etcd3) {}

  async get(k: string): Promise<Kv | undefined> {
    const res = await this.client.kv.range({ key: Buffer.from(k) });
    return res.kvs[0] ? toKv(res.kvs[0]) : undefined;
  }

  /** The values of every key under `prefix` (which should end with '/'). */
  async list<T>(prefix: string): Promise<T[]> {
    const [kvs] = await this.readMany(rangeOp(prefix, { prefix: true }));
    return values<T>(kvs);
  }

  /** Several ranges (and writes before them) in one txn, so all of them see the same revision. */
  async readMany<Ops extends IRequestOp[]>(...ops: Ops): Promise<{ [I in keyof Ops]: IKeyValue[] }> {
    const res = await this.client.kv.txn({ success: ops });
    return res.responses.map((r) => r.response_range?.kvs ?? []) as { [I in keyof Ops]: IKeyValue[] };
  }

  /**
   * Unconditional writes, applied together. Says the revision etcd applied them at and whether
   * they changed anything: a put always does; a delete only when the key existed (a delete of
   * nothing makes no event, so a watcher never sees its revision).
   */
  async write(...ops: IRequestOp[]): Promise<{ revision: number; changed: boolean }> {
    const res = await this.client.kv.txn({ success: ops });
    const changed = res.responses.some(
      // Unset oneof members decode as null or undefined.
      (r) => Boolean(r.response_put) || Number(r.response_delete_range?.deleted ?? 0) > 0,
    );
    return { revision: Number(res.header.revision), changed };
  }

  /**
   * Read-modify-write of `k`: `decide` sees the current value (undefined = absent) and returns the
   * ops to apply (they may touch other keys too) and the result. The ops apply only while `k` still
   * has the mod revision that was read (0 = absent); otherwise the failed txn returns the new value
   * and `decide` runs again, at most MAX_CAS_ATTEMPTS times. `current` null means "not read yet,
   * assume absent": create-if-absent and a free lock then take a single round trip.
   * `onCommit` hears the revision the ops were applied at (not called when `decide` wrote nothing).
   */
  async cas<T>(
    k: string,
    current: Kv | undefined | null,
    decide: (cur: Kv | undefined) => CasDecision<T>,
    onCommit?: (revision: number) => void,
  ): Promise<T> {
    let cur = current ?? undefined;
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const { ops, result } = decide(cur);
      if (!ops) return result;
      const res = await this.client.kv.txn({
        compare: [
          {
            key: Buffer.from(k),
            target: CompareTarget.Mod,
            result: CompareResult.Equal,
            mod_revision: cur?.mod ?? 0,
          },
        ],
        success: ops,
        failure: [rangeOp(k)],
      });
      if (res.succeeded) {
        onCommit?.(Number(res.header.revision));
        return result;
      }
      const kv = res.responses[0]?.response_range?.kvs[0];
      cur = kv ? toKv(kv) : undefined;
      // Others keep writing the same key: a small random pause spreads the next tries apart.
      if (attempt > 2) await sleep(Math.random() * Math.min(50, 2 ** attempt));
    }
    throw new StowageError(
      'BUSY',
      `${k} kept changing during ${MAX_CAS_ATTEMPTS} tries to update it; try again`,
    );
  }
}

/** A range read of `k`; `prefix`: every key starting with it; `createdAt`: only keys created at that revision. */
export function rangeOp(
  k: string,
  opts: { prefix?: boolean; keysOnly?: boolean; createdAt?: number } = {},
): IRequestOp {
  const req: NonNullable<IRequestOp['request_range']> = { key: Buffer.from(k) };
  if (opts.prefix) req.range_end = prefixEnd(Buffer.from(k));
  if (opts.keysOnly) req.keys_only = true;
  if (opts.createdAt !== undefined) {
    req.min_create_revision = opts.createdAt;
    req.max_create_revision = opts.createdAt;
  }
  return { request_range: req };
}

export function putOp(k: string, value: unknown, lease?: string): IRequestOp {
  const req: NonNullable<IRequestOp['request_put']> = {
    key: Buffer.from(k),
    value: Buffer.from(JSON.stringify(value)),
  };
  if (lease !== undefined) req.lease = lease;
  return { request_put: req };
}

export function delOp(k: string): IRequestOp {
  return { request_delete_range: { key: Buffer.from(k) } };
}

/** The end of the range of keys starting with `p`: the prefix with its last byte incremented. */
export function prefixEnd(p: Buffer): Buffer {
  const end = Buffer.from(p);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the keyspace
}

export function parse<T>(value: string): T {
  return JSON.parse(value) as T;
}

export function values<T>(kvs: IKeyValue[]): T[] {
  return kvs.map((kv) => parse<T>(kv.value.toString()));
}

/** The last '/'-separated segment of a key, URI-decoded. */
export function lastSegment(kv: IKeyValue): string {
  const s = kv.key.toString();
  return decodeURIComponent(s.slice(s.lastIndexOf('/') + 1));
}

function toKv(kv: IKeyValue): Kv {
  return { value: kv.value.toString(), mod: kv.mod_revision };
}
