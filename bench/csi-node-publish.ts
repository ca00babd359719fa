/**
 * NodePublish of a staged volume (`node --import tsx bench/csi-node-publish.ts`, as root, after
 * `npm run build`): a CSI pod's NodePublish + NodeUnpublish of a `local` volume through a real
 * `stowage csi --mode node` process, next to the same work through the Docker door in the same
 * rounds, on one store and one volume already mounted on the host.
 *
 * "The same work" is the volume shown at one more path for one more user, counted, then undone:
 * - csi: NodePublishVolume (count the pod, bind-mount the volume at its target) and
 *   NodeUnpublishVolume (unbind, release the count, remove the target directory), each timed from
 *   the call to its reply over one gRPC connection, as kubelet calls.
 * - docker: `/VolumeDriver.Mount` (count the container; the volume is already mounted) over the
 *   daemon's plugin socket, then the bind mount into the container that dockerd itself makes,
 *   done here by `mount --bind` and `umount` spawned from this node process (the same tools the
 *   CSI plugin spawns), then `/VolumeDriver.Unmount`. The plugin requests alone are a row too.
 *
 * Rounds interleave the variants (their order alternating). Writes the `csi-node-publish` section
 * of BENCHMARKS.md (BENCH_NO_WRITE=1: print only).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type CsiClient, csiClient } from '../test/csi/client.js';
import { cleanups, runBench } from './lib/cleanups.js';
import { checkReply, PluginClient, startNode, stopChild, summarize, waitForSocket } from './lib/harness.js';
import { writeSection } from './lib/sections.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.BENCH_CSI_ROUNDS ?? 60);
const WARMUP = 5;
const VOLUME = 'bench-csi-publish';
const START_TIMEOUT_MS = 30_000;
/** Issue 15's goal: NodePublish within this many times the same operation through the Docker socket. */
const GOAL = 1.2;
const run = promisify(execFile);

async function mounted(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((l) => l.split(' ')[4] === path);
}

/** A unary CSI call timed from the call to the reply, in µs; a failure fails the run. */
async function timed(client: CsiClient, method: string, req: Record<string, unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await client.call('Node', method as never, req as never);
  return Number(process.hrtime.bigint() - started) / 1000;
}

interface Sample {
  total: number[];
  publish: number[];
  unpublish: number[];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('run the CSI publish benchmark as root (loop devices, mounts)');
  const started = performance.now();
  const loadBefore = loadavg()[0]!;
  const dir = await mkdtemp('/tmp/stowage-bench-csipublish-');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const configFile = join(dir, 'config.yaml');
  const kubelet = join(dir, 'kubelet');
  await writeFile(configFile, [`dataDir: ${join(dir, 'data')}`, 'hostId: bench-host', ''].join('\n'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STOWAGE_')));
  const bin = join(REPO, 'bin', 'stowage.js');

  const daemon = startNode(
    'stowage daemon',
    ['--no-warnings', bin, '--config', configFile, '--socket-dir', join(dir, 'sock'), 'daemon'],
    REPO,
    env,
  );
  cleanups.push(() => stopChild(daemon));
  const pluginSocket = join(dir, 'sock', 'stowage-local.sock');
  await waitForSocket(daemon, pluginSocket, START_TIMEOUT_MS);
  const csiSocket = join(dir, 'csi', 'csi.sock');
  const node = startNode(
    'stowage csi',
    [
      '--no-warnings',
      bin,
      '--config',
      configFile,
      'csi',
      '--driver',
      'local',
      '--mode',
      'node',
      '--endpoint',
      `unix://${csiSocket}`,
      '--kubelet-dir',
      kubelet,
    ],
    REPO,
    env,
  );
  cleanups.push(() => stopChild(node));
  await waitForSocket(node, csiSocket, START_TIMEOUT_MS);

  const docker = new PluginClient(pluginSocket, 60_000);
  cleanups.push(async () => docker.close());
  const post = async (op: string, body: object) => {
    const reply = await docker.post(`/VolumeDriver.${op}`, JSON.stringify(body));
    return { us: Number(reply.ns) / 1000, body: checkReply(op, reply) };
  };
  const csi = csiClient(csiSocket);
  cleanups.push(async () => csi.close());

  await post('Create', { Name: VOLUME, Opts: { size: '64M' } });
  cleanups.push(() => docker.post('/VolumeDriver.Remove', JSON.stringify({ Name: VOLUME })));
  const cap = {
    accessMode: { mode: 'SINGLE_NODE_MULTI_WRITER' },
    mount: { fsType: '', mountFlags: [], volumeMountGroup: '' },
  };
  const staging = join(
    kubelet,
    'plugins',
    'kubernetes.io',
    'csi',
    'local.csi.stowage.io',
    'bench',
    'globalmount',
  );
  await mkdir(staging, { recursive: true });
  await csi.call('Node', 'NodeStageVolume', {
    volumeId: VOLUME,
    stagingTargetPath: staging,
    volumeCapability: cap,
  });
  cleanups.push(() =>
    csi.call('Node', 'NodeUnstageVolume', { volumeId: VOLUME, stagingTargetPath: staging }),
  );
  const mountpoint = join(dir, 'data', 'volumes', VOLUME);
  if (!(await mounted(mountpoint))) throw new Error(`${mountpoint} is not mounted after NodeStageVolume`);

  const csiRound = async (i: number): Promise<[number, number]> => {
    const pod = `0000${i.toString(16).padStart(4, '0')}-0000-4000-8000-000000000000`;
    const podDir = join(kubelet, 'pods', pod, 'volumes', 'kubernetes.io~csi', VOLUME);
    await mkdir(podDir, { recursive: true }); // kubelet makes the parent
    const target = join(podDir, 'mount');
    const p = await timed(csi, 'NodePublishVolume', {
      volumeId: VOLUME,
      stagingTargetPath: staging,
      targetPath: target,
      volumeCapability: cap,
    });
    if (!(await mounted(target))) throw new Error(`csi: ${target} is not mounted after NodePublishVolume`);
    const u = await timed(csi, 'NodeUnpublishVolume', { volumeId: VOLUME, targetPath: target });
    if (await mounted(target)) throw new Error(`csi: ${target} still mounted after NodeUnpublishVolume`);
    await rm(join(kubelet, 'pods', pod), { recursive: true, force: true });
    return [p, u];
  };
  const plugin: number[] = [];
  // The doors' own cost: a request that does nothing, on each transport.
  const empty = { grpc: [] as number[], http: [] as number[] };
  const emptyRound = async () => {
    empty.grpc.push(await timed(csi, 'NodeGetCapabilities', {}));
    empty.http.push((await post('Capabilities', {})).us);
  };
  const dockerRound = async (i: number): Promise<[number, number]> => {
    const id = randomBytes(32).toString('hex');
    const target = join(dir, 'containers', String(i), 'data');
    await mkdir(target, { recursive: true }); // dockerd's container rootfs has the directory
    const t0 = process.hrtime.bigint();
    const m = await post('Mount', { Name: VOLUME, ID: id });
    await run('mount', ['--bind', '--', String(m.body.Mountpoint), target]);
    const t1 = process.hrtime.bigint();
    await run('umount', ['--', target]);
    const u = await post('Unmount', { Name: VOLUME, ID: id });
    const t2 = process.hrtime.bigint();
    plugin.push(m.us + u.us);
    await rmdir(target);
    return [Number(t1 - t0) / 1000, Number(t2 - t1) / 1000];
  };

  const variants = [
    { name: 'CSI NodePublish + NodeUnpublish', round: csiRound },
    { name: 'Docker Mount + bind, umount + Unmount', round: dockerRound },
  ];
  const samples: Sample[] = variants.map(() => ({ total: [], publish: [], unpublish: [] }));
  for (let r = 0; r < WARMUP + ROUNDS; r++) {
    for (let k = 0; k < variants.length; k++) {
      const i = (r + k) % variants.length;
      const [p, u] = await variants[i]!.round(r);
      if (r < WARMUP) continue;
      samples[i]!.total.push(p + u);
      samples[i]!.publish.push(p);
      samples[i]!.unpublish.push(u);
    }
    if (r >= WARMUP) await emptyRound();
  }
  const pluginOnly = summarize(Float64Array.from(plugin.slice(WARMUP)));
  const emptyGrpc = summarize(Float64Array.from(empty.grpc));
  const emptyHttp = summarize(Float64Array.from(empty.http));
  const rows = variants.map((v, i) => ({
    name: v.name,
    total: summarize(Float64Array.from(samples[i]!.total)),
    publish: summarize(Float64Array.from(samples[i]!.publish)),
    unpublish: summarize(Float64Array.from(samples[i]!.unpublish)),
  }));
  const fmt = (us: number) => `${(us / 1000).toFixed(2)} ms`;
  const [csiRow, dockerRow] = rows as [(typeof rows)[0], (typeof rows)[0]];
  const ratio = csiRow.total.medianUs / dockerRow.total.medianUs;
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const markdown = `## CSI NodePublish of a staged \`local\` volume, next to the Docker door

Generated by \`bench/csi-node-publish.ts\` (as root, after \`npm run build\`) from one real run; do
not edit by hand, rerun instead.

Machine: ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), Linux ${release()}, Node ${process.version}. Run on ${new Date().toISOString()}: ${ROUNDS} rounds after ${WARMUP} warm-up rounds, variants interleaved (order alternating), took ${((performance.now() - started) / 1000).toFixed(0)} s; 1-minute load average ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after.

${line(['Show the volume at one more path, then undo', 'Median', 'p90', 'Show (median)', 'Undo (median)'])}
${line(['---', '---', '---', '---', '---'])}
${rows.map((r) => line([r.name, fmt(r.total.medianUs), fmt(r.total.p90Us), fmt(r.publish.medianUs), fmt(r.unpublish.medianUs)])).join('\n')}
${line(['Docker Mount + Unmount requests alone (no bind)', fmt(pluginOnly.medianUs), fmt(pluginOnly.p90Us), '—', '—'])}
${line(['an empty request: gRPC NodeGetCapabilities', fmt(emptyGrpc.medianUs), fmt(emptyGrpc.p90Us), '—', '—'])}
${line(['an empty request: HTTP /VolumeDriver.Capabilities', fmt(emptyHttp.medianUs), fmt(emptyHttp.p90Us), '—', '—'])}

| Target | Measured | Status |
| --- | --- | --- |
| NodePublish + NodeUnpublish ≤ ${GOAL}× the same work through the Docker socket (medians) | ${ratio.toFixed(2)}× (${fmt(csiRow.total.medianUs)} vs ${fmt(dockerRow.total.medianUs)}) | ${ratio <= GOAL ? 'met' : '**not met**'} |

- Both doors on one SQLite store and one ${'64M'} \`local\` volume, staged once through CSI (so
  mounted under stowage's mount root before the rounds): neither side mounts the volume itself.
- csi: \`stowage csi --driver local --mode node\`; each round publishes at a new pod's target
  (\`…/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount\`, the parent made by the bench as kubelet
  does) and unpublishes it; the plugin spawns \`mount --bind\` and \`umount\` and removes the target.
  Checked outside the clock: the target is in /proc/self/mountinfo after publish and gone after.
- docker: \`stowage daemon\`; each round sends \`/VolumeDriver.Mount\` with a fresh container ID, then
  \`mount --bind\` of the returned mountpoint (dockerd makes this bind itself with a system call, so
  this row charges the Docker side two process starts it does not pay in production), \`umount\`,
  \`/VolumeDriver.Unmount\`. The plugin requests alone are the third row.
- The empty requests show what each transport costs by itself, both ends in Node: grpc-js over
  HTTP/2 (this bench's client is grpc-js too; kubelet's is grpc-go) against node:http with
  keep-alive, the way dockerd's client talks; the rest of the difference is the publish's own bookkeeping: an
  intent opened and closed in the journal for each of publish and unpublish (a Docker Mount of a
  mounted volume writes only its count), the volume read for the stage check, and the target
  directory made and removed by the plugin (made by dockerd outside this clock on the Docker side).
`;
  process.stdout.write(`${markdown}\n`);
  if (!process.env.BENCH_NO_WRITE) {
    await writeSection(join(REPO, 'BENCHMARKS.md'), 'csi-node-publish', markdown);
    process.stderr.write('bench: wrote the csi-node-publish section of BENCHMARKS.md\n');
  }
}

await runBench(main);
