import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DeleteSnapshotCommand,
  DescribeSnapshotsCommand,
  type DescribeSnapshotsCommandInput,
  DescribeVolumesCommand,
  EC2Client,
  EC2ServiceException,
  type Snapshot,
} from '@aws-sdk/client-ec2';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sdkClientConfig, sdkError } from '../../helpers/aws-sdk.js';
import { until } from '../../helpers/deadline.js';
import { FakeEc2 } from './ec2-endpoint.js';

/** CreateSnapshot, DeleteSnapshot and DescribeSnapshots of the suite's EC2, through the real SDK. */

const ec2Error = (p: Promise<unknown>) => sdkError(p, EC2ServiceException);

async function createAvailable(ec2: EC2Client, size = 1): Promise<string> {
  const out = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: size }));
  const id = out.VolumeId ?? '';
  await until(`${id} available`, async () => {
    const v = (await ec2.send(new DescribeVolumesCommand({ VolumeIds: [id] }))).Volumes?.[0];
    return v?.State === 'available' ? true : undefined;
  });
  return id;
}

async function describeSnapshot(ec2: EC2Client, id: string): Promise<Snapshot> {
  const s = (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots?.[0];
  if (!s) throw new Error(`no ${id} in DescribeSnapshots`);
  return s;
}

function snapshotWithTags(ec2: EC2Client, volumeId: string, tags: Record<string, string>) {
  return ec2.send(
    new CreateSnapshotCommand({
      VolumeId: volumeId,
      Description: 'made by a test',
      TagSpecifications: [
        { ResourceType: 'snapshot', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
      ],
    }),
  );
}

describe('FakeEc2 snapshots through the real SDK', () => {
  let fake: FakeEc2;
  let ec2: EC2Client;

  beforeEach(async () => {
    fake = await FakeEc2.start({ stateDelayMs: 20, delays: { snapshot: 150 } });
    ec2 = new EC2Client(sdkClientConfig(fake.url));
  });

  afterEach(async () => {
    ec2.destroy();
    await fake.stop();
    expect(fake.errors).toEqual([]);
  });

  it('CreateSnapshot answers pending with the volume, size, start time and tags; completed after the delay', async () => {
    const vol = await createAvailable(ec2, 3);
    const before = Date.now();
    const out = await snapshotWithTags(ec2, vol, { app: 'db' });
    expect(out).toMatchObject({
      SnapshotId: expect.stringMatching(/^snap-0[0-9a-f]{16}$/),
      VolumeId: vol,
      State: 'pending',
      VolumeSize: 3,
      Description: 'made by a test',
      OwnerId: '123456789012',
      Tags: [{ Key: 'app', Value: 'db' }],
    });
    expect(out.Progress).toMatch(/^\d{1,2}%$/);
    expect(out.StartTime?.getTime()).toBeGreaterThanOrEqual(before - 1000);
    const id = out.SnapshotId ?? '';
    const seen = new Set<string>();
    const done = await until('snapshot completed', async () => {
      const s = await describeSnapshot(ec2, id);
      seen.add(s.State ?? '');
      return s.State === 'completed' ? s : undefined;
    });
    expect([...seen]).toEqual(['pending', 'completed']);
    expect(done).toMatchObject({ Progress: '100%', VolumeId: vol, StartTime: out.StartTime });
    expect(fake.snapshot(id)).toMatchObject({ volumeId: vol, state: 'completed', tags: { app: 'db' } });
  });

  it('refuses CreateSnapshot of an unknown, malformed or creating volume, and wrong tag resource types', async () => {
    const unknown = await ec2Error(
      ec2.send(new CreateSnapshotCommand({ VolumeId: 'vol-0000000000000dead' })),
    );
    expect(unknown.name).toBe('InvalidVolume.NotFound');
    const malformed = await ec2Error(ec2.send(new CreateSnapshotCommand({ VolumeId: 'disk-1' })));
    expect(malformed.name).toBe('InvalidVolumeID.Malformed');
    fake.delays.create = 10_000;
    const creating = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 1 }));
    const notYet = await ec2Error(ec2.send(new CreateSnapshotCommand({ VolumeId: creating.VolumeId ?? '' })));
    expect(notYet.name).toBe('IncorrectState');
    fake.delays.create = 20;
    const vol = await createAvailable(ec2);
    const wrongType = await ec2Error(
      ec2.send(
        new CreateSnapshotCommand({
          VolumeId: vol,
          TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'a', Value: 'b' }] }],
        }),
      ),
    );
    expect(wrongType.name).toBe('InvalidParameterValue');
    expect(fake.snapshotList).toEqual([]);
  });

  it('a volume cannot be made from a snapshot still pending (IncorrectState), and can once completed', async () => {
    const vol = await createAvailable(ec2, 2);
    const id = (await ec2.send(new CreateSnapshotCommand({ VolumeId: vol }))).SnapshotId ?? '';
    const early = await ec2Error(
      ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', SnapshotId: id })),
    );
    expect([early.name, early.message]).toEqual(['IncorrectState', 'Snapshot is in invalid state - pending']);
    await until('completed', async () =>
      (await describeSnapshot(ec2, id)).State === 'completed' ? 1 : undefined,
    );
    const made = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', SnapshotId: id }));
    expect(made).toMatchObject({ Size: 2, SnapshotId: id });
  });

  it('DeleteSnapshot forgets it; again is InvalidSnapshot.NotFound; a malformed id is InvalidSnapshotID.Malformed', async () => {
    const vol = await createAvailable(ec2);
    const id = (await ec2.send(new CreateSnapshotCommand({ VolumeId: vol }))).SnapshotId ?? '';
    const out = await ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }));
    expect(out.$metadata.httpStatusCode).toBe(200);
    expect(fake.snapshot(id)).toBeUndefined();
    expect((await ec2Error(ec2.send(new DeleteSnapshotCommand({ SnapshotId: id })))).name).toBe(
      'InvalidSnapshot.NotFound',
    );
    expect((await ec2Error(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })))).name).toBe(
      'InvalidSnapshot.NotFound',
    );
    expect((await ec2Error(ec2.send(new DeleteSnapshotCommand({ SnapshotId: 'snapshot-1' })))).name).toBe(
      'InvalidSnapshotID.Malformed',
    );
  });

  it('DescribeSnapshots filters by tag:<key>, tag-key, volume-id and status, and owner self', async () => {
    const a = await createAvailable(ec2);
    const b = await createAvailable(ec2);
    const sa = (await snapshotWithTags(ec2, a, { 'stowage:snapshot-name': 'one' })).SnapshotId;
    const sb = (await snapshotWithTags(ec2, b, { 'stowage:snapshot-name': 'two', env: 'x' })).SnapshotId;
    fake.addSnapshot({ snapshotId: 'snap-0aaaaaaaaaaaaaaa1', sizeGiB: 1, tags: { env: 'x' } });
    const ids = async (input: DescribeSnapshotsCommandInput) =>
      ((await ec2.send(new DescribeSnapshotsCommand(input))).Snapshots ?? []).map((s) => s.SnapshotId).sort();

    expect(await ids({ Filters: [{ Name: 'tag:stowage:snapshot-name', Values: ['two'] }] })).toEqual([sb]);
    expect(await ids({ Filters: [{ Name: 'tag-key', Values: ['stowage:snapshot-name'] }] })).toEqual(
      [sa, sb].sort(),
    );
    expect(await ids({ Filters: [{ Name: 'volume-id', Values: [a] }] })).toEqual([sa]);
    expect(await ids({ Filters: [{ Name: 'status', Values: ['pending'] }] })).toEqual([sa, sb].sort());
    expect(await ids({ Filters: [{ Name: 'status', Values: ['completed'] }] })).toEqual([
      'snap-0aaaaaaaaaaaaaaa1',
    ]);
    expect(
      await ids({
        OwnerIds: ['self'],
        Filters: [
          { Name: 'tag:env', Values: ['x'] },
          { Name: 'tag-key', Values: ['stowage:snapshot-name'] },
        ],
      }),
    ).toEqual([sb]);
    expect(await ids({ OwnerIds: ['amazon'] })).toEqual([]);
    const bad = await ec2Error(
      ec2.send(new DescribeSnapshotsCommand({ Filters: [{ Name: 'colour', Values: ['x'] }] })),
    );
    expect(bad.name).toBe('InvalidParameterValue');
  });

  it('DescribeSnapshots pages with MaxResults and NextToken (5 to 1000; not with SnapshotIds)', async () => {
    const vol = await createAvailable(ec2);
    const made: string[] = [];
    for (let i = 0; i < 7; i++) {
      made.push((await ec2.send(new CreateSnapshotCommand({ VolumeId: vol }))).SnapshotId ?? '');
    }
    const first = await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], MaxResults: 5 }));
    expect(first.Snapshots).toHaveLength(5);
    expect(first.NextToken).toEqual(expect.any(String));
    const second = await ec2.send(
      new DescribeSnapshotsCommand({ OwnerIds: ['self'], MaxResults: 5, NextToken: first.NextToken ?? '' }),
    );
    expect(second.Snapshots).toHaveLength(2);
    expect(second.NextToken).toBeUndefined();
    expect([...(first.Snapshots ?? []), ...(second.Snapshots ?? [])].map((s) => s.SnapshotId).sort()).toEqual(
      made.sort(),
    );
    const tooFew = await ec2Error(ec2.send(new DescribeSnapshotsCommand({ MaxResults: 4 })));
    expect(tooFew.name).toBe('InvalidParameterValue');
    const withIds = await ec2Error(
      ec2.send(new DescribeSnapshotsCommand({ MaxResults: 5, SnapshotIds: [made[0] ?? ''] })),
    );
    expect(withIds.name).toBe('InvalidParameterCombination');
  });

  it('throttling injected for CreateSnapshot, DeleteSnapshot and DescribeSnapshots changes nothing', async () => {
    const vol = await createAvailable(ec2);
    for (const action of ['CreateSnapshot', 'DescribeSnapshots']) {
      fake.failNext(action, { code: 'RequestLimitExceeded', message: 'Request limit exceeded.' });
    }
    const create = await ec2Error(ec2.send(new CreateSnapshotCommand({ VolumeId: vol })));
    expect([create.name, create.$metadata.httpStatusCode]).toEqual(['RequestLimitExceeded', 503]);
    expect(fake.snapshotList).toEqual([]);
    expect((await ec2Error(ec2.send(new DescribeSnapshotsCommand({})))).name).toBe('RequestLimitExceeded');
    const id = (await ec2.send(new CreateSnapshotCommand({ VolumeId: vol }))).SnapshotId ?? '';
    fake.failNext('DeleteSnapshot', { code: 'RequestLimitExceeded' });
    expect((await ec2Error(ec2.send(new DeleteSnapshotCommand({ SnapshotId: id })))).name).toBe(
      'RequestLimitExceeded',
    );
    expect(fake.snapshot(id)).toBeDefined();
  });
});

describe('FakeEc2 snapshots of real images', () => {
  let dir: string;
  let fake: FakeEc2;
  let ec2: EC2Client;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-fake-ec2-snap-'));
    fake = await FakeEc2.start({
      stateDelayMs: 10,
      blockDevices: { imageDir: join(dir, 'images'), devDir: join(dir, 'dev'), byIdDir: join(dir, 'by-id') },
    });
    ec2 = new EC2Client(sdkClientConfig(fake.url));
  });

  afterEach(async () => {
    ec2.destroy();
    await fake.stop();
    await rm(dir, { recursive: true, force: true });
    expect(fake.errors).toEqual([]);
  });

  const marker = (text: string) => Buffer.from(`${text}\n`);
  const OFFSET = 3 * 1024 * 1024;

  async function writeAt(path: string, data: Buffer): Promise<void> {
    const h = await open(path, 'r+');
    try {
      await h.write(data, 0, data.length, OFFSET);
    } finally {
      await h.close();
    }
  }

  async function readAt(path: string, length: number): Promise<string> {
    const h = await open(path, 'r');
    try {
      const buf = Buffer.alloc(length);
      await h.read(buf, 0, length, OFFSET);
      return buf.toString();
    } finally {
      await h.close();
    }
  }

  it("holds the volume's bytes as they were at CreateSnapshot; a volume made from it gets them; delete removes the copy", async () => {
    const vol = await createAvailable(ec2);
    const volImage = fake.volume(vol)?.imagePath ?? '';
    await writeAt(volImage, marker('before-snapshot'));
    const id = (await ec2.send(new CreateSnapshotCommand({ VolumeId: vol }))).SnapshotId ?? '';
    await writeAt(volImage, marker('after-snapshot!'));
    const snapImage = fake.snapshot(id)?.image ?? '';
    expect(snapImage).toBe(join(dir, 'images', `${id}.img`));
    expect(await readAt(snapImage, 16)).toBe('before-snapshot\n');
    expect((await stat(snapImage)).blocks * 512).toBeLessThan(1024 * 1024); // sparse copy

    await until('completed', async () =>
      (await describeSnapshot(ec2, id)).State === 'completed' ? 1 : undefined,
    );
    const made = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', SnapshotId: id }));
    expect(await readAt(fake.volume(made.VolumeId ?? '')?.imagePath ?? '', 16)).toBe('before-snapshot\n');

    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }));
    await expect(stat(snapImage)).rejects.toThrow(/ENOENT/);
  });
});
