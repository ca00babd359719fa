/**
 * The reading "host" of bench/store-scale.ts's visibility-lag measurement, in its own process:
 * an etcd store with the daemon's read cache that, for i = 0..count-1, asks Get (getVolumeState)
 * for `lag-<i>` every millisecond until it is there and prints `<i> <wall-clock ms>` (the clock of
 * performance.timeOrigin, the same in every process on the machine).
 *
 * Usage: node --import tsx bench/lib/etcd-lag-reader.ts <endpoint> <prefix> <count>
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdStore } from '../../src/state/etcd-store.js';

const [endpoint, prefix, countArg] = process.argv.slice(2);
const count = Number(countArg);
const store = new EtcdStore({
  endpoints: [endpoint!],
  prefix: prefix!,
  requestTimeoutMs: 5000,
  readCache: {},
});
try {
  if (!(await store.readCacheLive(30_000))) throw new Error('the read cache did not go live within 30 s');
  process.stdout.write('ready\n');
  const deadline = Date.now() + 120_000;
  for (let i = 0; i < count; i++) {
    while (!(await store.getVolumeState(`lag-${i}`)).volume) {
      if (Date.now() > deadline) throw new Error(`lag-${i} never showed up`);
      await sleep(1);
    }
    process.stdout.write(`${i} ${performance.timeOrigin + performance.now()}\n`);
  }
} finally {
  await store.close();
}
