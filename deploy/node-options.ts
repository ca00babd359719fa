/**
 * The node options every deploy form runs stowage with: the image's ENV (so the compose and
 * Rancher stacks, the DaemonSet and the CSI pods), the managed plugins' env (settable), and the
 * systemd unit (overridable in /etc/stowage/stowage.env), and as node's own flags in `npm start`.
 * One value, checked against each form by test/deploy/node-options.test.ts.
 *
 * Why: with the etcd store a daemon keeps every volume in memory (about 80 MB of heap at 100,000
 * volumes), and V8 sizes its heap for a machine's memory, not for what the process holds. With a
 * heap limit of 2 GB or more (Node's default on any host with 8 GB) V8 lets the heap grow up to
 * four times its live size between full collections, and keeps young-generation semi-spaces of
 * 16 MB each: measured at 100,000 volumes, 280-290 MB resident, of which ~60 MB was committed but
 * unused old space and 32 MB an idle young generation. A limit just under 2 GB makes V8 grow the
 * heap by at most ~2x, and 4 MB semi-spaces cost a few more (sub-millisecond) scavenges:
 * 180-200 MB at 100,000 volumes (BENCHMARKS.md), with room for about 2 million volumes. A host
 * that holds more raises --max-old-space-size (docs/operations.md).
 */
export const NODE_OPTIONS = '--max-old-space-size=2000 --max-semi-space-size=4';
