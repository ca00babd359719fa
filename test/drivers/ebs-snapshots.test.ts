import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EbsSnapshots, SNAPSHOT_NAME_TAG, SNAPSHOT_VOLUME_TAG } from '../../drivers/ebs/snapshots.js';
import { SdkEc2 } from '../../src/cloud/ec2.js';
import type { VolumeRecord } from '../../src/state/store.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { fakeEndpointOptions } from '../helpers/aws-sdk.js';
import { until } from '../helpers/deadline.js';
import { failure } from '../helpers/failure.js';
import { AZ, CREATED_AT } from './ebs-setup.js';

/**
 * The ebs driver's snapshots (drivers/ebs/snapshots.ts) and the EC2 seam's snapshot calls under
 * them (SdkEc2), against the suite's EC2 through the real SDK: the tags that make a snapshot
 * stowage's, look-ups by id, volume and name, deletion, and EC2's failures as StowageErrors.
 */

const GiB = 1024 ** 3;

let fake: FakeEc2;
let sdk: SdkEc2;
let ops: EbsSnapshots;

useTestAwsCredentials();

beforeEach(async () => {
  fake = await FakeEc2.start({ stateDelayMs: 10, delays: { snapshot: 100 } });
  sdk = new SdkEc2(fakeEndpointOptions(fake.url));
  ops = new EbsSnapshots(sdk);
});

afterEach(async () => {
  await fake.stop();
  expect(fake.errors).toEqual([]);
});

/** A stowage volume record over a new EBS volume of `sizeGiB`. */
async function volume(name: string, sizeGiB = 4): Promise<VolumeRecord> {
  const v = await sdk.createVolume({
    clientToken: name,
    type: 'gp3',
    sizeGiB,
    availabilityZone: AZ,
    tags: {},
  });
  await until(`${v.id} available`, async () =>
    (await sdk.describeVolume(v.id))?.state === 'available' ? true : undefined,
  );
  return {
    name,
    driver: 'ebs',
    options: {},
    fields: { volumeId: v.id },
    status: 'ready',
    removePolicy: 'delete',
    adopted: false,
    createdAt: CREATED_AT,
  } as unknown as VolumeRecord;
}

describe('EbsSnapshots', () => {
  it("tags a new snapshot with its name (also as Name) and its volume's name; pending, then complete", async () => {
    const db = await volume('db', 4);
    const made = await ops.create(db, 'nightly');
    expect(made).toMatchObject({
      name: 'nightly',
      volume: 'db',
      sourceId: db.fields.volumeId,
      sizeBytes: 4 * GiB,
      state: 'pending',
    });
    expect(ops.sourceIdOf(db)).toBe(db.fields.volumeId);
    expect(made.id).toMatch(/^snap-/);
    expect(fake.snapshot(made.id)).toMatchObject({
      volumeId: db.fields.volumeId,
      description: 'stowage snapshot nightly of volume db',
      tags: { Name: 'nightly', [SNAPSHOT_NAME_TAG]: 'nightly', [SNAPSHOT_VOLUME_TAG]: 'db' },
    });
    const done = await until('snapshot complete', async () => {
      const s = await ops.get(made.id);
      return s?.state === 'complete' ? s : undefined;
    });
    expect(done).toMatchObject({ id: made.id, name: 'nightly', volume: 'db', createdAt: made.createdAt });
  });

  it('lists only snapshots with a stowage name, by volume and by name', async () => {
    const db = await volume('db');
    const web = await volume('web');
    const a = await ops.create(db, 'a');
    const b = await ops.create(web, 'b');
    fake.addSnapshot({
      snapshotId: 'snap-0aaaaaaaaaaaaaaa1',
      sizeGiB: 1,
      tags: { [SNAPSHOT_VOLUME_TAG]: 'db' },
    });
    const ids = (list: { id: string }[]) => list.map((s) => s.id).sort();
    expect(ids(await ops.list({}))).toEqual([a.id, b.id].sort());
    expect(ids(await ops.list({ volume: 'db' }))).toEqual([a.id]);
    expect(ids(await ops.list({ name: 'b' }))).toEqual([b.id]);
    expect(ids(await ops.list({ name: 'b', volume: 'db' }))).toEqual([]);
    const call = fake.calls.filter((c) => c.action === 'DescribeSnapshots').at(-1);
    expect(call?.params).toMatchObject({ 'Owner.1': 'self', MaxResults: '1000' });
  });

  it('a name with wildcard characters finds only itself', async () => {
    const db = await volume('db');
    const star = await ops.create(db, 'nightly*');
    await ops.create(db, 'nightly-1');
    const q = await ops.create(db, 'a?c\\');
    await ops.create(db, 'abc\\');
    expect((await ops.list({ name: 'nightly*' })).map((s) => s.id)).toEqual([star.id]);
    expect((await ops.list({ name: 'a?c\\' })).map((s) => s.id)).toEqual([q.id]);
  });

  it('get: a snapshot by id (a foreign one without name or volume); unknown and malformed ids are none', async () => {
    fake.addSnapshot({ snapshotId: 'snap-0aaaaaaaaaaaaaaa1', sizeGiB: 2 });
    expect(await ops.get('snap-0aaaaaaaaaaaaaaa1')).toEqual({
      id: 'snap-0aaaaaaaaaaaaaaa1',
      sourceId: 'vol-ffffffff', // what EC2 shows for a snapshot copied from elsewhere
      sizeBytes: 2 * GiB,
      createdAt: expect.any(Date),
      state: 'complete',
    });
    expect(await ops.get('snap-0000000000000dead')).toBeUndefined();
    const before = fake.calls.length;
    expect(await ops.get('pvc-1234')).toBeUndefined();
    expect(fake.calls.length).toBe(before); // never asked EC2
  });

  it('the seam looks up several ids even when one is unknown', async () => {
    fake.addSnapshot({ snapshotId: 'snap-0aaaaaaaaaaaaaaa1', sizeGiB: 2 });
    fake.addSnapshot({ snapshotId: 'snap-0aaaaaaaaaaaaaaa2', sizeGiB: 2 });
    const found = await sdk.findSnapshots({
      ids: ['snap-0aaaaaaaaaaaaaaa1', 'snap-0000000000000dead', 'snap-0aaaaaaaaaaaaaaa2'],
    });
    expect(found.map((s) => s.id)).toEqual(['snap-0aaaaaaaaaaaaaaa1', 'snap-0aaaaaaaaaaaaaaa2']);
  });

  it('delete: gone from EC2; again is success', async () => {
    const made = await ops.create(await volume('db'), 'n');
    await ops.delete(made.id);
    expect(fake.snapshot(made.id)).toBeUndefined();
    await ops.delete(made.id);
    expect(fake.calls.filter((c) => c.action === 'DeleteSnapshot').map((c) => c.error)).toEqual([
      undefined,
      'InvalidSnapshot.NotFound',
    ]);
  });

  it("EC2's throttling is UNAVAILABLE (retryable by the caller) and takes or deletes nothing", async () => {
    const db = await volume('db');
    fake.failNext('CreateSnapshot', { code: 'RequestLimitExceeded', message: 'Request limit exceeded.' });
    const err = await failure(ops.create(db, 'n'));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('RequestLimitExceeded');
    expect(fake.snapshotList).toEqual([]);
    const made = await ops.create(db, 'n');
    fake.failNext('DeleteSnapshot', { code: 'RequestLimitExceeded' });
    expect((await failure(ops.delete(made.id))).code).toBe('UNAVAILABLE');
    expect(fake.snapshot(made.id)).toBeDefined();
    fake.failNext('DescribeSnapshots', { code: 'RequestLimitExceeded' });
    expect((await failure(ops.list({}))).code).toBe('UNAVAILABLE');
  });

  it('a volume without a recorded EBS id is an INTERNAL error, and nothing is asked of EC2', async () => {
    const db = await volume('db');
    const before = fake.calls.length;
    const err = await failure(ops.create({ ...db, fields: {} }, 'n'));
    expect(err.code).toBe('INTERNAL');
    expect(fake.calls.length).toBe(before);
  });
});
