import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csiConfig, type RunningCsi, startCsi } from '../../src/cli/csi.js';
import { type Config, loadConfig } from '../../src/config.js';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { type CsiClient, csiClient } from '../csi/client.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { until } from '../helpers/deadline.js';

/**
 * EBS snapshots through the CSI controller, for real: `stowage csi --driver ebs --mode controller`
 * composed in-process (startCsi, the command's own start) on a real unix socket, driven by the
 * suite's grpc-js client as external-snapshotter drives it, against the suite's EC2 over HTTP with
 * the real AWS SDK. Volumes are real: loop devices over the endpoint's image files, formatted and
 * mounted through the VolumeManager as the Docker door would, so the data a snapshot carries is
 * written in one volume and read back in another made from it. The controller restarts in the
 * middle: nothing of the snapshots lives in the store, so the restarted one answers the same.
 */

const INSTANCE = 'i-0e2e0000000000015';
const AZ = 'us-east-1a';
const MARKER = 'written before the snapshot\n';
const MOUNT_ID = 'e2e-writer';

let base: string;
let ec2: FakeEc2;
let config: Config;
let rt: Runtime;
let csi: RunningCsi | undefined;
let client: CsiClient | undefined;
const volumes: string[] = [];

useTestAwsCredentials();

/** A controller on the socket, over a fresh runtime (the same store file and config). */
async function startController(): Promise<void> {
  rt = await openRuntime(config);
  const endpoint = `unix://${join(base, 'csi', 'csi.sock')}`;
  csi = await startCsi(rt, {
    driver: 'ebs',
    endpoint,
    mode: 'controller',
    kubeletDir: join(base, 'kubelet'),
  });
  client = csiClient(join(base, 'csi', 'csi.sock'));
}

async function stopController(): Promise<void> {
  client?.close();
  client = undefined;
  await csi?.stop();
  csi = undefined;
}

type SnapshotRpc = 'CreateSnapshot' | 'DeleteSnapshot' | 'ListSnapshots' | 'GetSnapshot';

/** A Controller call on the running controller; the tests read the replies field by field. */
// biome-ignore lint/suspicious/noExplicitAny: as above
function call(method: SnapshotRpc, req: Record<string, unknown>): Promise<any> {
  if (!client) throw new Error('no controller is running');
  return client.call('Controller', method, req);
}

async function code(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    return (err as { code: number }).code;
  }
  throw new Error('expected the call to fail');
}

/** Mounts the volume here through the core, runs `fn` on its mountpoint, unmounts (and detaches). */
async function withMounted<T>(name: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await rt.manager.mount('ebs', name, MOUNT_ID);
  try {
    return await fn(dir);
  } finally {
    await rt.manager.unmount('ebs', name, MOUNT_ID);
  }
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-csi-snap-'));
  const devDir = join(base, 'dev');
  const byIdDir = join(devDir, 'disk', 'by-id');
  await mkdir(byIdDir, { recursive: true });
  ec2 = await FakeEc2.start({
    blockDevices: { imageDir: join(base, 'ec2'), devDir, byIdDir },
    consistencyDelayMs: 100,
    // Long enough that the first answers are `pending`, short enough for the test to wait out.
    delays: { snapshot: 1500 },
  });
  ec2.addInstance({ instanceId: INSTANCE, availabilityZone: AZ, naming: 'nvme' });
  const file = join(base, 'config.yaml');
  await writeFile(file, '');
  config = csiConfig(
    loadConfig({
      file,
      env: {},
      flags: {
        dataDir: join(base, 'data'),
        hostId: 'e2e-csi-snap',
        aws: { region: 'us-east-1', instanceId: INSTANCE, availabilityZone: AZ, maxAttempts: 2 },
        ebs: { endpoint: ec2.url, devDir, byIdDir, attachTimeout: '10s', createTimeout: '30s' },
      },
    }),
    'ebs',
  );
  await startController();
}, 60_000);

afterAll(async () => {
  await stopController();
  if (base) {
    const cleanup = await openRuntime(config);
    for (const v of volumes) await cleanup.manager.remove('ebs', v).catch(() => undefined);
    await cleanup.close();
  }
  await ec2?.stop();
  if (base) await rm(base, { recursive: true, force: true });
}, 60_000);

describe('CSI snapshots of EBS volumes', () => {
  let snapshotId = '';

  it('takes a snapshot of a volume with data; the same request again answers the same snapshot', async () => {
    await rt.manager.create('ebs', 'csi-snap-src', { size: '1' });
    volumes.push('csi-snap-src');
    await withMounted('csi-snap-src', async (dir) => {
      await writeFile(join(dir, 'marker'), MARKER);
      await execa('sync', ['-f', join(dir, 'marker')]);
    });
    const req = {
      sourceVolumeId: 'csi-snap-src',
      name: 'snapshot-0f1e2d3c',
      // What csi-snapshotter adds with --extra-create-metadata (deploy/kubernetes/csi/ebs).
      parameters: {
        'csi.storage.k8s.io/volumesnapshot/name': 'db-nightly',
        'csi.storage.k8s.io/volumesnapshot/namespace': 'default',
        'csi.storage.k8s.io/volumesnapshotcontent/name': 'snapcontent-0f1e2d3c',
      },
    };
    const first = (await call('CreateSnapshot', req)).snapshot;
    snapshotId = first.snapshotId;
    expect(snapshotId).toMatch(/^snap-/);
    expect(first).toMatchObject({
      sourceVolumeId: 'csi-snap-src',
      sizeBytes: String(1024 ** 3),
      readyToUse: false,
    });
    expect(Number(first.creationTime.seconds)).toBeGreaterThan(Date.parse('2025-01-01') / 1000);
    const again = (await call('CreateSnapshot', req)).snapshot;
    expect(again).toEqual(first);
    expect(ec2.calls.filter((c) => c.action === 'CreateSnapshot')).toHaveLength(1);
    expect(ec2.snapshot(snapshotId)).toMatchObject({
      volumeId: ec2.volumes.find((v) => v.tags['stowage.io/volume'] === 'csi-snap-src')?.volumeId,
      tags: { 'stowage.io/snapshot-name': 'snapshot-0f1e2d3c', 'stowage.io/volume': 'csi-snap-src' },
    });
    // The same name for another volume is another snapshot's: ALREADY_EXISTS, nothing taken.
    await rt.manager.create('ebs', 'csi-snap-other', { size: '1' });
    volumes.push('csi-snap-other');
    expect(await code(call('CreateSnapshot', { ...req, sourceVolumeId: 'csi-snap-other' }))).toBe(
      status.ALREADY_EXISTS,
    );
    expect(ec2.snapshotList).toHaveLength(1);
  }, 60_000);

  it('a throttled EC2 answers UNAVAILABLE and takes nothing', async () => {
    ec2.failNext('CreateSnapshot', { code: 'RequestLimitExceeded', times: 2 }); // both SDK attempts
    expect(
      await code(call('CreateSnapshot', { sourceVolumeId: 'csi-snap-other', name: 'snapshot-throttled' })),
    ).toBe(status.UNAVAILABLE);
    expect(ec2.snapshotList).toHaveLength(1);
  });

  it('after a controller restart: the same snapshot, ready to use once EC2 completes it', async () => {
    await stopController();
    await startController();
    const req = { sourceVolumeId: 'csi-snap-src', name: 'snapshot-0f1e2d3c' };
    expect((await call('CreateSnapshot', req)).snapshot.snapshotId).toBe(snapshotId);
    const ready = await until(
      'ready_to_use',
      async () => {
        const s = (await call('GetSnapshot', { snapshotId })).snapshot;
        return s.readyToUse ? s : undefined;
      },
      20_000,
    );
    expect(ready).toMatchObject({ snapshotId, sourceVolumeId: 'csi-snap-src', readyToUse: true });
    expect((await call('CreateSnapshot', req)).snapshot.readyToUse).toBe(true);
  }, 60_000);

  it('lists page by page with max_entries and next_token, and by source volume', async () => {
    const more: string[] = [];
    for (const name of ['snapshot-b', 'snapshot-c']) {
      more.push(
        (await call('CreateSnapshot', { sourceVolumeId: 'csi-snap-other', name })).snapshot.snapshotId,
      );
    }
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const res = await call('ListSnapshots', { maxEntries: 2, startingToken: token });
      expect(res.entries.length).toBeLessThanOrEqual(2);
      seen.push(...res.entries.map((e: { snapshot: { snapshotId: string } }) => e.snapshot.snapshotId));
      token = res.nextToken;
      pages++;
    } while (token !== '' && pages < 10);
    expect(pages).toBe(2);
    expect([...seen].sort()).toEqual([snapshotId, ...more].sort());
    const bySource = await call('ListSnapshots', { sourceVolumeId: 'csi-snap-src' });
    expect(bySource.entries.map((e: { snapshot: { snapshotId: string } }) => e.snapshot.snapshotId)).toEqual([
      snapshotId,
    ]);
    expect(await code(call('ListSnapshots', { startingToken: 'bogus' }))).toBe(status.ABORTED);
    for (const id of more) await call('DeleteSnapshot', { snapshotId: id });
  }, 60_000);

  it('a volume made from the snapshot holds the data written before it', async () => {
    await rt.manager.create('ebs', 'csi-snap-restored', { snapshotId });
    volumes.push('csi-snap-restored');
    const restored = ec2.volumes.find((v) => v.tags['stowage.io/volume'] === 'csi-snap-restored');
    expect(restored?.snapshotId).toBe(snapshotId);
    const text = await withMounted('csi-snap-restored', (dir) => readFile(join(dir, 'marker'), 'utf8'));
    expect(text).toBe(MARKER);
  }, 60_000);

  it('deletes the snapshot; again succeeds; then it is NOT_FOUND and listed nowhere', async () => {
    await call('DeleteSnapshot', { snapshotId });
    await call('DeleteSnapshot', { snapshotId });
    expect(ec2.snapshot(snapshotId)).toBeUndefined();
    expect(await code(call('GetSnapshot', { snapshotId }))).toBe(status.NOT_FOUND);
    expect((await call('ListSnapshots', { snapshotId })).entries).toEqual([]);
    expect(ec2.snapshotList).toEqual([]);
    // The volume made from it lives on.
    expect(ec2.volumes.find((v) => v.tags['stowage.io/volume'] === 'csi-snap-restored')).toBeDefined();
  });
});
