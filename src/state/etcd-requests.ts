import { type EtcdKv, parse, putOp } from './etcd-kv.js';
import type { RequestSample, RequestTally } from './store.js';

/**
 * The request tallies of the doors that record in the store (see RequestSample), on etcd: one key
 * per host, door, driver, operation, code and latency bucket,
 *
 *   requests/<host>/<door>/<driver>/<operation>/<code>/<le>    RequestTally
 *
 * counted up by a compare-and-swap (EtcdKv.cas: retried on a lost race, at most MAX_CAS_ATTEMPTS
 * times, inside the store method's deadline), so concurrent calls on several processes lose no
 * count. The labels sit in the value too: reading a host's tallies is one prefix range, no key
 * parsing. A bucket of its own per key keeps requests of different speeds off each other's key.
 */
export class EtcdRequestTallies {
  constructor(
    private readonly kv: EtcdKv,
    /** `<prefix>/<segments...>`, the store's key builder (segments URI-encoded). */
    private readonly key: (...segments: string[]) => string,
  ) {}

  async record(host: string, r: RequestSample): Promise<void> {
    const k = this.key('requests', host, r.door, r.driver, r.operation, r.code, r.le);
    // Assumed absent at first: the first request of its kind costs one round trip, later ones two
    // (the failed compare returns the current value).
    await this.kv.cas(k, null, (cur) => {
      const was = cur ? parse<RequestTally>(cur.value) : undefined;
      const tally: RequestTally = {
        door: r.door,
        driver: r.driver,
        operation: r.operation,
        code: r.code,
        le: r.le,
        count: (was?.count ?? 0) + 1,
        seconds: (was?.seconds ?? 0) + r.seconds,
      };
      return { ops: [putOp(k, tally)], result: undefined };
    });
  }

  async list(host: string): Promise<RequestTally[]> {
    return this.kv.list<RequestTally>(`${this.key('requests', host)}/`);
  }
}
