import { CompareResult, CompareTarget, type Etcd3, type IKeyValue, type IRequestOp } from 'etcd3';
import { StowageError } from '../base/errors.js';
import { prefixEnd, putOp } from './etcd-kv.js';
import type { AttachmentRecord, HostRecord, MountRecord, VolumeRecord } from './store.js';

/** Every host, volume, attachment and mount of a store: what `stowage state migrate` copies. */
export interface StoreSnapshot {
  hosts: HostRecord[];
  volumes: VolumeRecord[];
  attachments: AttachmentRecord[];
  mounts: MountRecord[];
}

/**
 * etcd refuses a txn of more than 128 operations (its --max-txn-ops default) and, by default,
 * requests over 1.5 MiB: a batch stays under both (records are a few hundred bytes; a batch that
 * would pass 1 MiB is cut early).
 */
const MAX_OPS_PER_TXN = 128;
const MAX_BYTES_PER_TXN = 1024 * 1024;
/** Keys per range request when reading a snapshot back. */
const PAGE = 5000;

/**
 * Whole-store reads and writes in a few large requests, instead of one or two per volume: 10,000
 * volumes go in ~80 txns rather than 20,000 round trips. `key(...segments)` is the store's key
 * builder (`<prefix>/<family>/<encoded segments>`).
 */
export class EtcdBulk {
  constructor(
    private readonly client: Etcd3,
    private readonly key: (...segments: string[]) => string,
    /** Bounds one request (the store's deadline per call): a snapshot is many requests. */
    private readonly bounded: <T>(what: string, fn: () => Promise<T>) => Promise<T>,
  ) {}

  /** Reads the four families, each paged, all at the revision of the first page. */
  async read(): Promise<StoreSnapshot> {
    let at = 0;
    const family = async <T>(name: string): Promise<T[]> => {
      const start = Buffer.from(`${this.key(name)}/`);
      const end = prefixEnd(start);
      const out: T[] = [];
      let from = start;
      for (;;) {
        const res = await this.bounded(`read ${name}`, () =>
          this.client.kv.range({ key: from, range_end: end, limit: PAGE, ...(at ? { revision: at } : {}) }),
        );
        if (!at) at = Number(res.header.revision);
        for (const kv of res.kvs) out.push(JSON.parse(kv.value.toString()) as T);
        const last: IKeyValue | undefined = res.kvs[res.kvs.length - 1];
        if (!res.more || !last) return out;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
    };
    const hosts = await family<HostRecord>('hosts');
    const volumes = await family<VolumeRecord>('volumes');
    const attachments = await family<AttachmentRecord>('attachments');
    const mounts = await family<MountRecord>('mounts');
    return { hosts, volumes, attachments, mounts };
  }

  /**
   * Writes every record in batched txns. Each volume is created only if absent (compared in its
   * txn): a volume that appeared meanwhile fails the batch with CONFLICT, writing none of it.
   */
  async write(s: StoreSnapshot): Promise<{ txns: number }> {
    const items: Array<{ op: IRequestOp; createOnly?: string }> = [
      ...s.hosts.map((h) => ({ op: putOp(this.key('hosts', h.id), h) })),
      ...s.volumes.map((v) => {
        const k = this.key('volumes', v.name);
        return { op: putOp(k, v), createOnly: k };
      }),
      ...s.attachments.map((a) => ({ op: putOp(this.key('attachments', a.volume, a.host), a) })),
      ...s.mounts.map((m) => ({ op: putOp(this.key('mounts', m.volume, m.host), m) })),
    ];
    let txns = 0;
    let batch: typeof items = [];
    let bytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const guarded = batch.filter((b) => b.createOnly !== undefined).map((b) => b.createOnly!);
      const ops = batch.map((b) => b.op);
      const res = await this.bounded(`write ${ops.length} records`, () =>
        this.client.kv.txn({
          compare: guarded.map((k) => ({
            key: Buffer.from(k),
            target: CompareTarget.Create,
            result: CompareResult.Equal,
            create_revision: 0,
          })),
          success: ops,
        }),
      );
      txns++;
      if (!res.succeeded) {
        throw new StowageError(
          'CONFLICT',
          `one of the volumes ${guarded.map((k) => k.slice(k.lastIndexOf('/') + 1)).join(', ')} appeared in the target while migrating; nothing of that batch was written: migrate into an empty store`,
        );
      }
      batch = [];
      bytes = 0;
    };
    for (const item of items) {
      const size = (item.op.request_put?.key?.length ?? 0) + (item.op.request_put?.value?.length ?? 0);
      if (batch.length >= MAX_OPS_PER_TXN || bytes + size > MAX_BYTES_PER_TXN) await flush();
      batch.push(item);
      bytes += size;
    }
    await flush();
    return { txns };
  }
}
