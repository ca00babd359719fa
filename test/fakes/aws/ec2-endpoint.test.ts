import { lstat, mkdtemp, open, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  type CreateVolumeCommandInput,
  DeleteVolumeCommand,
  DescribeAvailabilityZonesCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  DescribeVolumesModificationsCommand,
  DetachVolumeCommand,
  EC2Client,
  EC2ServiceException,
  ModifyVolumeCommand,
  paginateDescribeVolumes,
  type Volume,
  type VolumeModification,
} from '@aws-sdk/client-ec2';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { sdkClientConfig, sdkError } from '../../helpers/aws-sdk.js';
import { until } from '../../helpers/deadline.js';
import { FakeEc2 } from './ec2-endpoint.js';
import { FakeImds } from './imds.js';

const I_A = 'i-0aaaaaaaaaaaaaaa1'; // us-east-1a
const I_A2 = 'i-0aaaaaaaaaaaaaaa2'; // us-east-1a, another host
const I_B = 'i-0bbbbbbbbbbbbbbb1'; // us-east-1b
const GiB = 1024 ** 3;

function client(url: string, maxAttempts = 1): EC2Client {
  return new EC2Client(sdkClientConfig(url, maxAttempts));
}

/** The SDK exception a call rejects with. */
const ec2Error = (p: Promise<unknown>) => sdkError(p, EC2ServiceException);

async function describeVolume(ec2: EC2Client, volumeId: string): Promise<Volume> {
  const out = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }));
  const v = out.Volumes?.[0];
  if (!v) throw new Error(`no ${volumeId} in DescribeVolumes`);
  return v;
}

async function modificationOf(ec2: EC2Client, volumeId: string): Promise<VolumeModification> {
  const out = await ec2.send(new DescribeVolumesModificationsCommand({ VolumeIds: [volumeId] }));
  const m = out.VolumesModifications?.[0];
  if (!m) throw new Error(`no modification of ${volumeId}`);
  return m;
}

function volumeInState(ec2: EC2Client, volumeId: string, state: string): Promise<Volume> {
  return until(`${volumeId} ${state}`, async () => {
    const v = await describeVolume(ec2, volumeId);
    return v.State === state ? v : undefined;
  });
}

function attached(ec2: EC2Client, volumeId: string): Promise<Volume> {
  return until(`${volumeId} attached`, async () => {
    const v = await describeVolume(ec2, volumeId);
    return v.Attachments?.[0]?.State === 'attached' ? v : undefined;
  });
}

async function createAvailable(ec2: EC2Client, az = 'us-east-1a', size = 1): Promise<string> {
  const out = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: az, Size: size }));
  const id = out.VolumeId ?? '';
  await volumeInState(ec2, id, 'available');
  return id;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** Loop devices whose backing file is `file`. */
/** The device link of an attachment, once the fake has made it (a moment after `attached`). */
function deviceAt(path: string): Promise<string> {
  return until(`device ${path}`, async () => ((await exists(path)) ? path : undefined), 3000);
}

async function loopsOf(file: string): Promise<string[]> {
  const { stdout } = await execa('losetup', ['-j', file], { timeout: 10_000 });
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(':')[0] ?? '');
}

describe('FakeEc2 through the real SDK', () => {
  let fake: FakeEc2;
  let ec2: EC2Client;

  beforeEach(async () => {
    fake = await FakeEc2.start({ stateDelayMs: 30 });
    fake.addInstance({
      instanceId: I_A,
      availabilityZone: 'us-east-1a',
      privateDnsName: 'ip-10-0-0-1.ec2.internal',
    });
    fake.addInstance({ instanceId: I_A2, availabilityZone: 'us-east-1a' });
    fake.addInstance({
      instanceId: I_B,
      availabilityZone: 'us-east-1b',
      usedDevices: ['/dev/xvda', '/dev/xvdb'],
    });
    ec2 = client(fake.url);
  });

  afterEach(async () => {
    ec2.destroy();
    await fake.stop();
    expect(fake.errors).toEqual([]);
  });

  it('creates a volume that goes creating -> available, with gp3 defaults', async () => {
    const out = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 10 }));
    expect(out).toMatchObject({
      State: 'creating',
      Size: 10,
      VolumeType: 'gp3',
      Iops: 3000,
      Throughput: 125,
      Encrypted: false,
      AvailabilityZone: 'us-east-1a',
      Attachments: [],
    });
    expect(out.VolumeId).toMatch(/^vol-[0-9a-f]{17}$/);
    expect(out.CreateTime).toBeInstanceOf(Date);
    expect(out.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const v = await volumeInState(ec2, out.VolumeId ?? '', 'available');
    expect(v.VolumeId).toBe(out.VolumeId);
    expect(fake.calls[0]?.action).toBe('CreateVolume');
    expect(fake.calls[0]?.params).toMatchObject({ AvailabilityZone: 'us-east-1a', Size: '10' });
  });

  it('is idempotent on ClientToken, and refuses the same token with other parameters', async () => {
    const ask = { AvailabilityZone: 'us-east-1a', Size: 5, VolumeType: 'io2' as const, Iops: 500 };
    const a = await ec2.send(new CreateVolumeCommand({ ...ask, ClientToken: 'tok-1' }));
    const b = await ec2.send(new CreateVolumeCommand({ ...ask, ClientToken: 'tok-1' }));
    expect(b.VolumeId).toBe(a.VolumeId);
    expect(fake.volumes).toHaveLength(1);
    expect(fake.volumes[0]).toMatchObject({ volumeType: 'io2', iops: 500, clientToken: 'tok-1' });
    const err = await ec2Error(ec2.send(new CreateVolumeCommand({ ...ask, Size: 6, ClientToken: 'tok-1' })));
    expect(err.name).toBe('IdempotentParameterMismatch');
    expect(err.$metadata.httpStatusCode).toBe(400);
    // Without a token the SDK makes one up: two calls, two volumes.
    await ec2.send(new CreateVolumeCommand(ask));
    expect(fake.volumes).toHaveLength(2);
  });

  it('validates CreateVolume like EC2', async () => {
    fake.addSnapshot({ snapshotId: 'snap-0123456789abcdef0', sizeGiB: 8 });
    const cases: [CreateVolumeCommandInput, string][] = [
      [{ AvailabilityZone: 'us-east-1z', Size: 1 }, 'InvalidZone.NotFound'],
      [{ Size: 1 }, 'MissingParameter'],
      [{ AvailabilityZone: 'us-east-1a' }, 'MissingParameter'],
      [{ AvailabilityZone: 'us-east-1a', SnapshotId: 'snap-0000000000000dead' }, 'InvalidSnapshot.NotFound'],
      [
        {
          AvailabilityZone: 'us-east-1a',
          SnapshotId: 'snap-0123456789abcdef0',
          Size: 4,
        },
        'InvalidParameterValue',
      ],
      [
        { AvailabilityZone: 'us-east-1a', Size: 1, VolumeType: 'gp2', Iops: 3000 },
        'InvalidParameterCombination',
      ],
      [{ AvailabilityZone: 'us-east-1a', Size: 4, VolumeType: 'io1' }, 'MissingParameter'],
      [{ AvailabilityZone: 'us-east-1a', Size: 1, KmsKeyId: 'alias/x' }, 'InvalidParameterDependency'],
      [
        {
          AvailabilityZone: 'us-east-1a',
          Size: 1,
          TagSpecifications: [{ ResourceType: 'snapshot', Tags: [{ Key: 'a', Value: 'b' }] }],
        },
        'InvalidParameterValue',
      ],
      [{ AvailabilityZone: 'us-east-1a', Size: 1, DryRun: true }, 'DryRunOperation'],
    ];
    for (const [input, code] of cases) {
      const err = await ec2Error(ec2.send(new CreateVolumeCommand(input)));
      expect(err.name, JSON.stringify(input)).toBe(code);
    }
    expect(fake.volumes).toEqual([]);
    const fromSnap = await ec2.send(
      new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', SnapshotId: 'snap-0123456789abcdef0' }),
    );
    expect(fromSnap).toMatchObject({ Size: 8, SnapshotId: 'snap-0123456789abcdef0' });
    const enc = await ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: 'us-east-1a',
        Size: 1,
        Encrypted: true,
        KmsKeyId: 'alias/x',
      }),
    );
    expect(enc).toMatchObject({ Encrypted: true, KmsKeyId: 'alias/x' });
  });

  it('keeps tags (escaped in XML) and filters DescribeVolumes by tag, tag-key, status, zone and instance', async () => {
    const tagged = async (az: string, tags: Record<string, string>) => {
      const out = await ec2.send(
        new CreateVolumeCommand({
          AvailabilityZone: az,
          Size: 1,
          TagSpecifications: [
            { ResourceType: 'volume', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
          ],
        }),
      );
      return out.VolumeId ?? '';
    };
    fake.delays.create = 400; // all three still creating when filtered by status
    const odd = `<a & "b"> 'c' ]]>`;
    const v1 = await tagged('us-east-1a', { 'stowage/name': 'db', owner: odd });
    const v2 = await tagged('us-east-1a', { 'stowage/name': 'cache' });
    const v3 = await tagged('us-east-1b', { other: 'x' });
    const ids = async (filters: { Name: string; Values: string[] }[]) => {
      const out = await ec2.send(new DescribeVolumesCommand({ Filters: filters }));
      return (out.Volumes ?? []).map((v) => v.VolumeId).sort();
    };
    expect((await describeVolume(ec2, v1)).Tags).toEqual([
      { Key: 'stowage/name', Value: 'db' },
      { Key: 'owner', Value: odd },
    ]);
    expect(await ids([{ Name: 'tag:stowage/name', Values: ['db'] }])).toEqual([v1]);
    expect(await ids([{ Name: 'tag:owner', Values: [odd] }])).toEqual([v1]);
    expect(await ids([{ Name: 'tag:stowage/name', Values: ['db', 'cache'] }])).toEqual([v1, v2].sort());
    expect(await ids([{ Name: 'tag:stowage/name', Values: ['ca*'] }])).toEqual([v2]);
    expect(await ids([{ Name: 'tag-key', Values: ['stowage/name'] }])).toEqual([v1, v2].sort());
    expect(await ids([{ Name: 'availability-zone', Values: ['us-east-1b'] }])).toEqual([v3]);
    expect(await ids([{ Name: 'status', Values: ['creating'] }])).toEqual([v1, v2, v3].sort());
    await volumeInState(ec2, v1, 'available');
    await volumeInState(ec2, v2, 'available');
    await ec2.send(new AttachVolumeCommand({ VolumeId: v2, InstanceId: I_A, Device: '/dev/xvdf' }));
    expect(await ids([{ Name: 'attachment.instance-id', Values: [I_A] }])).toEqual([v2]);
    expect(
      await ids([
        { Name: 'status', Values: ['available'] },
        { Name: 'tag-key', Values: ['stowage/name'] },
      ]),
    ).toEqual([v1]);

    const missing = await ec2Error(
      ec2.send(new DescribeVolumesCommand({ VolumeIds: [v1, 'vol-0000000000000dead'] })),
    );
    expect(missing.name).toBe('InvalidVolume.NotFound');
    expect(missing.message).toContain('vol-0000000000000dead');
    const badFilter = await ec2Error(
      ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'no-such-filter', Values: ['x'] }] })),
    );
    expect(badFilter.name).toBe('InvalidParameterValue');
  });

  it('pages DescribeVolumes with MaxResults/NextToken (the SDK paginator)', async () => {
    for (let i = 0; i < 7; i++)
      await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 1 }));
    const pages: number[] = [];
    for await (const page of paginateDescribeVolumes({ client: ec2, pageSize: 5 }, {})) {
      pages.push(page.Volumes?.length ?? 0);
    }
    expect(pages).toEqual([5, 2]);
  });

  it('attaches (attaching -> attached), shows it on the instance, detaches back to available', async () => {
    const vol = await createAvailable(ec2);
    const att = await ec2.send(
      new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }),
    );
    expect(att).toMatchObject({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf', State: 'attaching' });
    expect(att.AttachTime).toBeInstanceOf(Date);
    expect((await describeVolume(ec2, vol)).State).toBe('in-use');
    const v = await attached(ec2, vol);
    expect(v.Attachments).toEqual([
      {
        VolumeId: vol,
        InstanceId: I_A,
        Device: '/dev/xvdf',
        State: 'attached',
        AttachTime: att.AttachTime,
        DeleteOnTermination: false,
      },
    ]);

    const inst = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [I_A] }));
    const instance = inst.Reservations?.[0]?.Instances?.[0];
    expect(instance).toMatchObject({
      InstanceId: I_A,
      PrivateDnsName: 'ip-10-0-0-1.ec2.internal',
      Placement: { AvailabilityZone: 'us-east-1a' },
      RootDeviceName: '/dev/xvda',
      State: { Name: 'running' },
    });
    expect(instance?.BlockDeviceMappings?.map((m) => [m.DeviceName, m.Ebs?.Status])).toEqual([
      ['/dev/xvda', 'attached'],
      ['/dev/xvdf', 'attached'],
    ]);
    expect(instance?.BlockDeviceMappings?.[1]?.Ebs?.VolumeId).toBe(vol);

    const det = await ec2.send(
      new DetachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }),
    );
    expect(det.State).toBe('detaching');
    const after = await volumeInState(ec2, vol, 'available');
    expect(after.Attachments).toEqual([]);
    const again = await ec2Error(ec2.send(new DetachVolumeCommand({ VolumeId: vol })));
    expect(again.name).toBe('IncorrectState');

    expect(fake.events.filter((e) => e.volumeId === vol).map((e) => e.type)).toEqual([
      'attaching',
      'attached',
      'detaching',
      'detached',
    ]);
    expect(fake.maxConcurrentAttachments(vol)).toBe(1);
  });

  it('refuses attachments across zones, to a used device name, or of a volume not available', async () => {
    const volA = await createAvailable(ec2, 'us-east-1a');
    const volA2 = await createAvailable(ec2, 'us-east-1a');
    const volB = await createAvailable(ec2, 'us-east-1b');

    const zone = await ec2Error(
      ec2.send(new AttachVolumeCommand({ VolumeId: volA, InstanceId: I_B, Device: '/dev/xvdf' })),
    );
    expect(zone.name).toBe('InvalidVolume.ZoneMismatch');

    const root = await ec2Error(
      ec2.send(new AttachVolumeCommand({ VolumeId: volB, InstanceId: I_B, Device: '/dev/xvdb' })),
    );
    expect(root.name).toBe('InvalidParameterValue');
    expect(root.message).toContain('Attachment point /dev/xvdb is already in use');

    await ec2.send(new AttachVolumeCommand({ VolumeId: volA, InstanceId: I_A, Device: '/dev/xvdf' }));
    const taken = await ec2Error(
      ec2.send(new AttachVolumeCommand({ VolumeId: volA2, InstanceId: I_A, Device: '/dev/xvdf' })),
    );
    expect(taken.name).toBe('InvalidParameterValue');
    expect(taken.message).toContain('Attachment point /dev/xvdf is already in use');
    // The same name on another instance is fine.
    await ec2.send(new AttachVolumeCommand({ VolumeId: volA2, InstanceId: I_A2, Device: '/dev/xvdf' }));

    const inUse = await ec2Error(
      ec2.send(new AttachVolumeCommand({ VolumeId: volA, InstanceId: I_A2, Device: '/dev/xvdg' })),
    );
    expect(inUse.name).toBe('VolumeInUse');

    fake.delays.create = 5000;
    const creating = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 1 }));
    const notYet = await ec2Error(
      ec2.send(
        new AttachVolumeCommand({ VolumeId: creating.VolumeId, InstanceId: I_A, Device: '/dev/xvdh' }),
      ),
    );
    expect(notYet.name).toBe('IncorrectState');

    const noInstance = await ec2Error(
      ec2.send(
        new AttachVolumeCommand({ VolumeId: volB, InstanceId: 'i-0000000000000dead', Device: '/dev/xvdf' }),
      ),
    );
    expect(noInstance.name).toBe('InvalidInstanceID.NotFound');
    const badDevice = await ec2Error(
      ec2.send(new AttachVolumeCommand({ VolumeId: volB, InstanceId: I_B, Device: 'xvdf' })),
    );
    expect(badDevice.name).toBe('InvalidParameterValue');
    const wrongInstance = await ec2Error(
      ec2.send(new DetachVolumeCommand({ VolumeId: volA, InstanceId: I_B })),
    );
    expect(wrongInstance.name).toBe('InvalidAttachment.NotFound');
  });

  it('deletes: VolumeInUse while attached, then deleting, then gone', async () => {
    const vol = await createAvailable(ec2);
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }));
    const inUse = await ec2Error(ec2.send(new DeleteVolumeCommand({ VolumeId: vol })));
    expect(inUse.name).toBe('VolumeInUse');
    await attached(ec2, vol);
    fake.delays.detach = 300; // still detaching at the next call
    await ec2.send(new DetachVolumeCommand({ VolumeId: vol }));
    expect((await ec2Error(ec2.send(new DeleteVolumeCommand({ VolumeId: vol })))).name).toBe('VolumeInUse');
    await volumeInState(ec2, vol, 'available');

    await ec2.send(new DeleteVolumeCommand({ VolumeId: vol }));
    expect((await describeVolume(ec2, vol)).State).toBe('deleting');
    await until('volume gone', async () => {
      const err = await ec2Error(ec2.send(new DescribeVolumesCommand({ VolumeIds: [vol] }))).catch(
        () => undefined,
      );
      return err?.name === 'InvalidVolume.NotFound' ? true : undefined;
    });
    expect((await ec2Error(ec2.send(new DeleteVolumeCommand({ VolumeId: vol })))).name).toBe(
      'InvalidVolume.NotFound',
    );
    expect((await ec2Error(ec2.send(new DeleteVolumeCommand({ VolumeId: 'bogus' })))).name).toBe(
      'InvalidVolumeID.Malformed',
    );
    expect(fake.volumes).toEqual([]);
  });

  it('stickAttaching keeps an attachment attaching until it is detached', async () => {
    const vol = await createAvailable(ec2);
    fake.stickAttaching(vol);
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }));
    await sleep(100);
    expect((await describeVolume(ec2, vol)).Attachments?.[0]?.State).toBe('attaching');
    await ec2.send(new DetachVolumeCommand({ VolumeId: vol, Force: true }));
    await volumeInState(ec2, vol, 'available');
    expect(fake.events.filter((e) => e.volumeId === vol).map((e) => e.type)).toEqual([
      'attaching',
      'detaching',
      'detached',
    ]);
  });

  it('attachElsewhere states a foreign attachment; events prove no two attachments overlapped', async () => {
    const vol = await createAvailable(ec2);
    fake.attachElsewhere(vol, I_A2);
    const v = await describeVolume(ec2, vol);
    expect(v.State).toBe('in-use');
    expect(v.Attachments?.[0]).toMatchObject({ InstanceId: I_A2, State: 'attached' });
    const refused = await ec2Error(
      ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' })),
    );
    expect(refused.name).toBe('VolumeInUse');

    await ec2.send(new DetachVolumeCommand({ VolumeId: vol, InstanceId: I_A2, Force: true }));
    await volumeInState(ec2, vol, 'available');
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }));
    await attached(ec2, vol);
    const events = fake.events.filter((e) => e.volumeId === vol);
    expect(events.map((e) => [e.instanceId, e.type])).toEqual([
      [I_A2, 'attaching'],
      [I_A2, 'attached'],
      [I_A2, 'detaching'],
      [I_A2, 'detached'],
      [I_A, 'attaching'],
      [I_A, 'attached'],
    ]);
    expect(events[0]?.foreign).toBe(true);
    expect(fake.maxConcurrentAttachments(vol)).toBe(1);
  });

  it('throttling surfaces as RequestLimitExceeded (503) that the SDK retries as throttling', async () => {
    fake.failNext('DescribeVolumes', { code: 'RequestLimitExceeded', message: 'Request limit exceeded.' });
    const err = await ec2Error(ec2.send(new DescribeVolumesCommand({})));
    expect(err.name).toBe('RequestLimitExceeded');
    expect(err.message).toBe('Request limit exceeded.');
    expect(err.$fault).toBe('server');
    expect(err.$metadata.httpStatusCode).toBe(503);
    expect(err.$metadata.attempts).toBe(1);
    // EC2 errors are unmodeled: the SDK declares $retryable but leaves it undefined.
    expect('$retryable' in err).toBe(true);
    expect(fake.calls.at(-1)).toMatchObject({ action: 'DescribeVolumes', error: 'RequestLimitExceeded' });

    // With retries on, the SDK's standard strategy classifies it as throttling and tries again.
    const retrying = client(fake.url, 3);
    try {
      fake.failNext('DescribeVolumes', { code: 'RequestLimitExceeded' });
      const out = await retrying.send(new DescribeVolumesCommand({}));
      expect(out.$metadata.attempts).toBe(2);
      // A client error is not retried.
      fake.failNext('DescribeVolumes', { code: 'UnauthorizedOperation', times: 2 });
      const denied = await ec2Error(retrying.send(new DescribeVolumesCommand({})));
      expect(denied.name).toBe('UnauthorizedOperation');
      expect(denied.$metadata.attempts).toBe(1);
      expect(denied.$fault).toBe('client');
    } finally {
      retrying.destroy();
    }
    // failNext('*') hits any action; times counts calls.
    fake.failNext('*', { code: 'InternalError', times: 1 });
    const internal = await ec2Error(ec2.send(new DescribeAvailabilityZonesCommand({})));
    expect(internal.name).toBe('InternalError');
    expect(internal.$metadata.httpStatusCode).toBe(500);
  });

  it('answers other actions with InvalidAction, and a stalled call never answers', async () => {
    const res = await fetch(fake.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'Action=RunInstances&Version=2016-11-15&ImageId=ami-1',
      signal: AbortSignal.timeout(5000),
    });
    expect(res.status).toBe(400);
    const xml = await res.text();
    expect(xml).toMatch(/<Response><Errors><Error><Code>InvalidAction<\/Code><Message>[^<]+<\/Message>/);
    expect(xml).toMatch(/<RequestID>[0-9a-f-]{36}<\/RequestID><\/Response>$/);

    fake.failNext('DescribeVolumes', { code: 'unused', stall: true });
    const stalled = ec2.send(new DescribeVolumesCommand({}), { abortSignal: AbortSignal.timeout(150) });
    await expect(stalled).rejects.toThrow();
    expect(fake.calls.at(-1)?.action).toBe('DescribeVolumes');
  });

  it('is found through AWS_ENDPOINT_URL_EC2 when the client has no endpoint', async () => {
    vi.stubEnv('AWS_ENDPOINT_URL_EC2', fake.url);
    const viaEnv = new EC2Client({
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
    try {
      const out = await viaEnv.send(new DescribeAvailabilityZonesCommand({ ZoneNames: ['us-east-1b'] }));
      expect(out.AvailabilityZones?.map((z) => z.ZoneName)).toEqual(['us-east-1b']);
    } finally {
      viaEnv.destroy();
      vi.unstubAllEnvs();
    }
  });

  it('describes instances (private-dns-name filter), snapshots (tag filter) and zones', async () => {
    const byDns = await ec2.send(
      new DescribeInstancesCommand({
        Filters: [{ Name: 'private-dns-name', Values: ['ip-10-0-0-1.ec2.internal'] }],
      }),
    );
    expect(byDns.Reservations?.flatMap((r) => r.Instances?.map((i) => i.InstanceId))).toEqual([I_A]);
    const b = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [I_B] }));
    expect(b.Reservations?.[0]?.Instances?.[0]?.BlockDeviceMappings?.map((m) => m.DeviceName)).toEqual([
      '/dev/xvda',
      '/dev/xvdb',
    ]);
    const missing = await ec2Error(
      ec2.send(new DescribeInstancesCommand({ InstanceIds: ['i-0000000000000dead'] })),
    );
    expect(missing.name).toBe('InvalidInstanceID.NotFound');

    fake.addSnapshot({ snapshotId: 'snap-0aaaaaaaaaaaaaaa1', sizeGiB: 2, tags: { app: 'db' } });
    fake.addSnapshot({ snapshotId: 'snap-0aaaaaaaaaaaaaaa2', sizeGiB: 3, tags: { app: 'web' } });
    const snaps = await ec2.send(
      new DescribeSnapshotsCommand({ Filters: [{ Name: 'tag:app', Values: ['db'] }] }),
    );
    expect(snaps.Snapshots).toHaveLength(1);
    expect(snaps.Snapshots?.[0]).toMatchObject({
      SnapshotId: 'snap-0aaaaaaaaaaaaaaa1',
      VolumeSize: 2,
      State: 'completed',
      Tags: [{ Key: 'app', Value: 'db' }],
    });
    const byId = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-0aaaaaaaaaaaaaaa2'] }));
    expect(byId.Snapshots?.map((s) => s.SnapshotId)).toEqual(['snap-0aaaaaaaaaaaaaaa2']);
    const noSnap = await ec2Error(
      ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-0000000000000dead'] })),
    );
    expect(noSnap.name).toBe('InvalidSnapshot.NotFound');

    const zones = await ec2.send(new DescribeAvailabilityZonesCommand({}));
    expect(zones.AvailabilityZones?.map((z) => [z.ZoneName, z.ZoneId, z.State])).toEqual([
      ['us-east-1a', 'use1-az1', 'available'],
      ['us-east-1b', 'use1-az2', 'available'],
      ['us-east-1c', 'use1-az3', 'available'],
    ]);
  });

  it('test controls: failCreates ends a volume in error, failModifications fails the next ModifyVolume, vanish and removeInstance forget', async () => {
    fake.failCreates();
    const broken =
      (await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 1 }))).VolumeId ?? '';
    await volumeInState(ec2, broken, 'error');
    const vol = await createAvailable(ec2); // only the next one
    fake.failModifications('Volume modification failed: internal error');
    await ec2.send(new ModifyVolumeCommand({ VolumeId: vol, Size: 2 }));
    const failed = await until('failed', async () => {
      const m = await modificationOf(ec2, vol);
      return m.ModificationState === 'failed' ? m : undefined;
    });
    expect(failed.StatusMessage).toBe('Volume modification failed: internal error');
    await ec2.send(new ModifyVolumeCommand({ VolumeId: vol, Size: 3 })); // a failed one does not block the next
    fake.vanish(vol);
    expect((await ec2Error(ec2.send(new DescribeVolumesCommand({ VolumeIds: [vol] })))).name).toBe(
      'InvalidVolume.NotFound',
    );
    fake.removeInstance(I_B);
    expect((await ec2Error(ec2.send(new DescribeInstancesCommand({ InstanceIds: [I_B] })))).name).toBe(
      'InvalidInstanceID.NotFound',
    );
  });

  it('modifies a volume: modifying -> optimizing -> completed, new size shown at once; grows only, one at a time', async () => {
    const vol = await createAvailable(ec2, 'us-east-1a', 10);
    const never = await ec2Error(modificationOf(ec2, vol));
    expect(never.name).toBe('InvalidVolumeModification.NotFound');
    // Long enough that the refused second ModifyVolume below lands inside `modifying` on a loaded
    // machine too (with the file's 30 ms it once raced into `completed`).
    fake.delays.modify = 1000;
    fake.delays.optimize = 300;
    const out = await ec2.send(new ModifyVolumeCommand({ VolumeId: vol, Size: 20 }));
    expect(out.VolumeModification).toMatchObject({
      VolumeId: vol,
      ModificationState: 'modifying',
      TargetSize: 20,
      OriginalSize: 10,
    });
    expect((await describeVolume(ec2, vol)).Size).toBe(20);
    const busy = await ec2Error(ec2.send(new ModifyVolumeCommand({ VolumeId: vol, Size: 30 })));
    expect(busy.name).toBe('IncorrectModificationState');
    const seen = new Set<string>();
    const done = await until('modification completed', async () => {
      const m = await modificationOf(ec2, vol);
      seen.add(m.ModificationState ?? '');
      return m.ModificationState === 'completed' ? m : undefined;
    });
    expect([...seen]).toEqual(['modifying', 'optimizing', 'completed']);
    expect(done).toMatchObject({ Progress: 100, EndTime: expect.any(Date) });
    expect(fake.volume(vol)?.modification).toMatchObject({ state: 'completed', targetSizeGiB: 20 });

    const shrink = await ec2Error(ec2.send(new ModifyVolumeCommand({ VolumeId: vol, Size: 15 })));
    expect([shrink.name, shrink.message]).toEqual([
      'InvalidParameterValue',
      'New size cannot be smaller than existing size: 15 GiB < 20 GiB.',
    ]);
    const same = await ec2Error(ec2.send(new ModifyVolumeCommand({ VolumeId: vol, Size: 20 })));
    expect(same.name).toBe('InvalidParameterValue');
    const filtered = await ec2.send(
      new DescribeVolumesModificationsCommand({
        Filters: [{ Name: 'modification-state', Values: ['completed'] }],
      }),
    );
    expect(filtered.VolumesModifications?.map((m) => m.VolumeId)).toEqual([vol]);
  });
});

describe('FakeEc2 with real block devices (loop devices)', () => {
  let dir: string;
  let fake: FakeEc2 | undefined;
  let ec2: EC2Client;
  let dirs: { imageDir: string; devDir: string; byIdDir: string };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-fake-ec2-'));
    dirs = { imageDir: join(dir, 'images'), devDir: join(dir, 'dev'), byIdDir: join(dir, 'dev/disk/by-id') };
  });

  afterEach(async () => {
    ec2?.destroy();
    const images = fake?.volumes.flatMap((v) => (v.imagePath ? [v.imagePath] : [])) ?? [];
    await fake?.stop();
    expect(fake?.errors).toEqual([]);
    for (const img of images) expect(await loopsOf(img)).toEqual([]);
    fake = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function start(nvme: boolean, deviceDelayMs?: number): Promise<FakeEc2> {
    const f = await FakeEc2.start({
      stateDelayMs: 20,
      blockDevices: { ...dirs, nvme },
      ...(deviceDelayMs === undefined ? {} : { deviceDelayMs }),
    });
    f.addInstance({ instanceId: I_A, availabilityZone: 'us-east-1a' });
    ec2 = client(f.url);
    fake = f;
    return f;
  }

  it('requested naming: devDir/xvdf -> a real loop device over the image appears deviceDelayMs after attached; detach removes both', async () => {
    const f = await start(false, 300);
    const vol = await createAvailable(ec2, 'us-east-1a', 1);
    const image = join(dirs.imageDir, `${vol}.img`);
    const st = await stat(image);
    expect(st.size).toBe(GiB);
    expect(st.blocks * 512).toBeLessThan(1024 * 1024); // sparse

    f.delays.attach = 200; // long enough to look before it is attached
    f.delays.detach = 200;
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }));
    const link = join(dirs.devDir, 'xvdf');
    expect(await exists(link)).toBe(false); // attaching: no device yet
    await attached(ec2, vol);
    // EC2 says attached before the instance shows the disk: the driver has to wait for it.
    expect(await exists(link)).toBe(false);
    await deviceAt(link);
    const target = await readlink(link);
    expect(target).toMatch(/^\/dev\/loop\d+$/);
    expect((await stat(link)).isBlockDevice()).toBe(true);
    expect(await loopsOf(image)).toEqual([target]);
    expect(f.volume(vol)?.attachments[0]).toMatchObject({ loopDevice: target, link, state: 'attached' });
    expect(f.deviceDelayMs).toBe(300);
    expect(await exists(join(dirs.byIdDir, `nvme-Amazon_Elastic_Block_Store_${vol.replace('-', '')}`))).toBe(
      false,
    );

    await ec2.send(new DetachVolumeCommand({ VolumeId: vol }));
    expect(await exists(link)).toBe(true); // detaching: still there
    await volumeInState(ec2, vol, 'available');
    expect(await exists(link)).toBe(false);
    expect(await loopsOf(image)).toEqual([]);

    await ec2.send(new DeleteVolumeCommand({ VolumeId: vol }));
    expect(await exists(image)).toBe(false);
  });

  it('has a sensible non-zero device delay by default', async () => {
    expect((await start(false)).deviceDelayMs).toBeGreaterThan(0);
  });

  it('NVMe naming: devDir/nvme1n1 and its by-id link appear, nothing under the requested name, without any polling', async () => {
    await start(true);
    const vol = await createAvailable(ec2);
    const vol2 = await createAvailable(ec2);
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }));
    const link = join(dirs.byIdDir, `nvme-Amazon_Elastic_Block_Store_${vol.replace('-', '')}`);
    // No EC2 calls from here: the fake's own timer makes the device.
    await until('nvme link', async () => ((await exists(link)) ? true : undefined), 3000);
    expect((await stat(link)).isBlockDevice()).toBe(true);
    expect(await readlink(link)).toBe(join(dirs.devDir, 'nvme1n1'));
    expect(await readlink(join(dirs.devDir, 'nvme1n1'))).toMatch(/^\/dev\/loop\d+$/);
    expect(await exists(join(dirs.devDir, 'xvdf'))).toBe(false);
    expect((await describeVolume(ec2, vol)).Attachments?.[0]?.State).toBe('attached');
    // The next disk takes the next NVMe name, whatever name was requested.
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol2, InstanceId: I_A, Device: '/dev/xvdg' }));
    const link2 = join(dirs.byIdDir, `nvme-Amazon_Elastic_Block_Store_${vol2.replace('-', '')}`);
    await deviceAt(link2);
    expect(await readlink(link2)).toBe(join(dirs.devDir, 'nvme2n1'));
    await ec2.send(new DetachVolumeCommand({ VolumeId: vol }));
    await ec2.send(new DetachVolumeCommand({ VolumeId: vol2 }));
    await until('nvme link gone', async () => ((await exists(link)) ? undefined : true), 3000);
    await until('nvme1n1 gone', async () =>
      (await exists(join(dirs.devDir, 'nvme1n1'))) ? undefined : true,
    );
  });

  it('Xen naming (per instance): /dev/sdg is requested, /dev/xvdg appears', async () => {
    const f = await start(false);
    f.addInstance({
      instanceId: I_A2,
      availabilityZone: 'us-east-1a',
      blockDevices: { devDir: join(dir, 'xen') },
      naming: 'xen',
    });
    const vol = await createAvailable(ec2);
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A2, Device: '/dev/sdg' }));
    await attached(ec2, vol);
    await deviceAt(join(dir, 'xen', 'xvdg'));
    expect(await exists(join(dir, 'xen', 'sdg'))).toBe(false);
    expect((await describeVolume(ec2, vol)).Attachments?.[0]?.Device).toBe('/dev/sdg'); // EC2 keeps the asked name
    await ec2.send(new DetachVolumeCommand({ VolumeId: vol }));
    await volumeInState(ec2, vol, 'available');
  });

  it('a detach of a mounted device stays busy until it is unmounted; Force is honoured at once', async () => {
    const f = await start(false);
    const vol = await createAvailable(ec2);
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }));
    await attached(ec2, vol);
    const dev = await readlink(await deviceAt(join(dirs.devDir, 'xvdf')));
    await execa('mkfs.ext4', ['-q', '-F', dev]);
    const mnt = join(dir, 'mnt');
    await execa('mkdir', ['-p', mnt]);
    await execa('mount', [dev, mnt]);
    try {
      await ec2.send(new DetachVolumeCommand({ VolumeId: vol }));
      await sleep(300); // several of the fake's own looks: it stays busy
      expect((await describeVolume(ec2, vol)).Attachments?.[0]?.State).toBe('busy');
      expect((await describeVolume(ec2, vol)).State).toBe('in-use');
    } finally {
      await execa('umount', [mnt]);
    }
    await volumeInState(ec2, vol, 'available');

    // Held by the instance (as a mount would) and forced: detached all the same.
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }));
    await attached(ec2, vol);
    f.holdDevice(vol);
    await ec2.send(new DetachVolumeCommand({ VolumeId: vol }));
    expect((await describeVolume(ec2, vol)).Attachments?.[0]?.State).toBe('busy');
    await ec2.send(new DetachVolumeCommand({ VolumeId: vol, Force: true }));
    await volumeInState(ec2, vol, 'available');
  });

  it('eventual consistency: a new volume is missing from DescribeVolumes for consistencyDelayMs', async () => {
    const f = await start(false);
    f.consistencyDelayMs = 300;
    const out = await ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: 'us-east-1a',
        Size: 1,
        TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'k', Value: 'v' }] }],
      }),
    );
    const vol = out.VolumeId ?? '';
    expect((await ec2Error(ec2.send(new DescribeVolumesCommand({ VolumeIds: [vol] })))).name).toBe(
      'InvalidVolume.NotFound',
    );
    const byTag = () => ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:k', Values: ['v'] }] }));
    expect((await byTag()).Volumes).toEqual([]);
    await until('visible', async () => ((await byTag()).Volumes?.length ? true : undefined));
    expect((await describeVolume(ec2, vol)).VolumeId).toBe(vol);
  });

  it("a snapshot's image bytes become the new volume's contents, readable through the device", async () => {
    const f = await start(false);
    const snapImage = join(dir, 'snap.img');
    const marker = Buffer.from('stowage-snapshot-marker\n');
    const offset = 5 * 1024 * 1024;
    await writeFile(snapImage, '');
    const fh = await open(snapImage, 'r+');
    try {
      await fh.write(marker, 0, marker.length, offset);
      await fh.truncate(GiB);
    } finally {
      await fh.close();
    }
    f.addSnapshot({ snapshotId: 'snap-0123456789abcdef0', sizeGiB: 1, image: snapImage });
    const out = await ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: 'us-east-1a',
        SnapshotId: 'snap-0123456789abcdef0',
        Size: 2,
      }),
    );
    const vol = out.VolumeId ?? '';
    const image = join(dirs.imageDir, `${vol}.img`);
    const st = await stat(image);
    expect(st.size).toBe(2 * GiB);
    expect(st.blocks * 512).toBeLessThan(1024 * 1024); // still sparse
    const read = async (path: string) => {
      const h = await open(path, 'r');
      try {
        const buf = Buffer.alloc(marker.length);
        await h.read(buf, 0, marker.length, offset);
        return buf.toString();
      } finally {
        await h.close();
      }
    };
    expect(await read(image)).toBe(marker.toString());

    await volumeInState(ec2, vol, 'available');
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/sdg' }));
    await attached(ec2, vol);
    expect(await read(await deviceAt(join(dirs.devDir, 'sdg')))).toBe(marker.toString());
  });

  it('stop() detaches every loop device it made and removes the links', async () => {
    const f = await start(false);
    f.addInstance({
      instanceId: I_A2,
      availabilityZone: 'us-east-1a',
      blockDevices: { devDir: join(dir, 'dev2') },
    });
    const v1 = await createAvailable(ec2);
    const v2 = await createAvailable(ec2);
    await ec2.send(new AttachVolumeCommand({ VolumeId: v1, InstanceId: I_A, Device: '/dev/xvdf' }));
    await ec2.send(new AttachVolumeCommand({ VolumeId: v2, InstanceId: I_A2, Device: '/dev/xvdf' }));
    await attached(ec2, v1);
    await attached(ec2, v2);
    const links = [join(dirs.devDir, 'xvdf'), join(dir, 'dev2', 'xvdf')];
    for (const l of links) expect((await stat(await deviceAt(l))).isBlockDevice()).toBe(true);
    const images = [v1, v2].map((v) => join(dirs.imageDir, `${v}.img`));
    for (const img of images) expect(await loopsOf(img)).toHaveLength(1);

    await f.stop();
    for (const l of links) expect(await exists(l)).toBe(false);
    for (const img of images) expect(await loopsOf(img)).toEqual([]);
  });

  it('ModifyVolume grows the image and the attached loop device (losetup -c) before it says optimizing', async () => {
    const f = await start(false);
    const vol = await createAvailable(ec2, 'us-east-1a', 1);
    await ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: I_A, Device: '/dev/xvdf' }));
    await attached(ec2, vol);
    const loop = await readlink(await deviceAt(join(dirs.devDir, 'xvdf')));
    const size = async () => Number((await execa('blockdev', ['--getsize64', loop])).stdout);
    f.delays.modify = 300;
    await ec2.send(new ModifyVolumeCommand({ VolumeId: vol, Size: 2 }));
    expect(await size()).toBe(GiB); // modifying: not yet
    await until('optimizing', async () => {
      const m = await modificationOf(ec2, vol);
      return m.ModificationState === 'modifying' ? undefined : m;
    });
    expect(await size()).toBe(2 * GiB);
    const st = await stat(join(dirs.imageDir, `${vol}.img`));
    expect(st.size).toBe(2 * GiB);
    expect(st.blocks * 512).toBeLessThan(1024 * 1024); // still sparse
  });
});

describe('FakeImds (IMDSv2)', () => {
  let imds: FakeImds;

  /** A tiny IMDSv2 client: a token, then GETs carrying it; every request bounded. */
  async function imdsGet(base: string, path: string, timeoutMs = 2000): Promise<string> {
    const tokenRes = await fetch(`${base}/latest/api/token`, {
      method: 'PUT',
      headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '21600' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!tokenRes.ok) throw new Error(`token: ${tokenRes.status}`);
    const token = await tokenRes.text();
    const res = await fetch(`${base}${path}`, {
      headers: { 'X-aws-ec2-metadata-token': token },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
    return res.text();
  }

  beforeEach(async () => {
    imds = await FakeImds.start({
      instanceId: I_A,
      availabilityZone: 'us-east-1a',
      region: 'us-east-1',
      requireToken: true,
    });
  });

  afterEach(async () => {
    await imds.stop();
  });

  it('serves identity to a client that takes a token first', async () => {
    expect(await imdsGet(imds.url, '/latest/meta-data/instance-id')).toBe(I_A);
    expect(await imdsGet(imds.url, '/latest/meta-data/placement/availability-zone')).toBe('us-east-1a');
    expect(await imdsGet(imds.url, '/latest/meta-data/placement/region')).toBe('us-east-1');
    expect(await imdsGet(imds.url, '/latest/meta-data/local-hostname')).toBe('ip-10-0-0-10.ec2.internal');
    const doc = JSON.parse(await imdsGet(imds.url, '/latest/dynamic/instance-identity/document'));
    expect(doc).toMatchObject({ instanceId: I_A, availabilityZone: 'us-east-1a', region: 'us-east-1' });
    expect(imds.calls.filter((c) => c.method === 'GET').every((c) => c.token === 'valid')).toBe(true);
  });

  it('refuses GETs without a valid token and token requests without a TTL', async () => {
    const plain = await fetch(`${imds.url}/latest/meta-data/instance-id`, {
      signal: AbortSignal.timeout(2000),
    });
    expect(plain.status).toBe(401);
    const forged = await fetch(`${imds.url}/latest/meta-data/instance-id`, {
      headers: { 'X-aws-ec2-metadata-token': 'forged' },
      signal: AbortSignal.timeout(2000),
    });
    expect(forged.status).toBe(401);
    const noTtl = await fetch(`${imds.url}/latest/api/token`, {
      method: 'PUT',
      signal: AbortSignal.timeout(2000),
    });
    expect(noTtl.status).toBe(400);
    expect(imds.calls.map((c) => [c.token, c.status])).toEqual([
      ['none', 401],
      ['invalid', 401],
      ['none', 400],
    ]);
    await expect(imdsGet(imds.url, '/latest/meta-data/nothing-here')).rejects.toThrow('404');

    const tokenRes = await fetch(`${imds.url}/latest/api/token`, {
      method: 'PUT',
      headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '60' },
      signal: AbortSignal.timeout(2000),
    });
    const token = await tokenRes.text();
    imds.expireTokens();
    const expired = await fetch(`${imds.url}/latest/meta-data/instance-id`, {
      headers: { 'X-aws-ec2-metadata-token': token },
      signal: AbortSignal.timeout(2000),
    });
    expect(expired.status).toBe(401);

    imds.requireToken = false; // IMDSv1 allowed
    const v1 = await fetch(`${imds.url}/latest/meta-data/instance-id`, { signal: AbortSignal.timeout(2000) });
    expect(await v1.text()).toBe(I_A);
  });

  it('can hang (a bounded client times out) and can fail', async () => {
    imds.stall = true;
    const t0 = Date.now();
    await expect(imdsGet(imds.url, '/latest/meta-data/instance-id', 150)).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(imds.calls.at(-1)?.status).toBe('stalled');
    imds.stall = false;
    imds.failStatus = 500;
    await expect(imdsGet(imds.url, '/latest/meta-data/instance-id')).rejects.toThrow('token: 500');
    imds.failStatus = undefined;
    expect(await imdsGet(imds.url, '/latest/meta-data/instance-id')).toBe(I_A);
  });
});
