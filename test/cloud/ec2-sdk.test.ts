import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  DeleteVolumeCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  DescribeVolumesModificationsCommand,
  DetachVolumeCommand,
  EC2Client,
  EC2ServiceException,
  ModifyVolumeCommand,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { StowageError } from '../../src/base/errors.js';
import { DEVICE_NAME_IN_USE, SdkEc2 } from '../../src/cloud/ec2.js';
import { awsErrorName, fromAwsError } from '../../src/cloud/errors.js';
import { failure } from '../helpers/failure.js';

/**
 * SdkEc2 over a mocked EC2Client (aws-sdk-client-mock stubs `send`, so nothing leaves the process):
 * the requests it builds, the answers it maps, and AWS errors turned into StowageErrors.
 */

const mock = mockClient(EC2Client);
const VOL = 'vol-0123456789abcdef0';
const INST = 'i-0123456789abcdef0';

/** An error as the SDK throws it for an EC2 error response (name = EC2's error code). */
function awsError(name: string, message: string, fault: 'client' | 'server' = 'client'): EC2ServiceException {
  return new EC2ServiceException({
    name,
    message,
    $fault: fault,
    $metadata: { httpStatusCode: fault === 'client' ? 400 : 503, requestId: 'req-1' },
  });
}

let ec2: SdkEc2;

beforeEach(() => {
  mock.reset();
  ec2 = new SdkEc2({ region: 'us-east-1', maxAttempts: 1, requestTimeoutMs: 1000 });
});

afterAll(() => {
  mock.restore();
});

describe('SdkEc2 requests and answers', () => {
  it('sends CreateVolume with the ClientToken, the tags on the volume and only the fields given', async () => {
    mock.on(CreateVolumeCommand).resolves({
      VolumeId: VOL,
      Size: 10,
      State: 'creating',
      AvailabilityZone: 'us-east-1a',
      VolumeType: 'gp3',
      Tags: [{ Key: 'Name', Value: 'v1' }],
    });
    const v = await ec2.createVolume({
      clientToken: 'tok-1',
      type: 'gp3',
      sizeGiB: 10,
      availabilityZone: 'us-east-1a',
      tags: { Name: 'v1', 'stowage.io/volume': 'v1' },
    });
    const calls = mock.commandCalls(CreateVolumeCommand);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.args[0].input).toEqual({
      ClientToken: 'tok-1',
      AvailabilityZone: 'us-east-1a',
      VolumeType: 'gp3',
      Size: 10,
      TagSpecifications: [
        {
          ResourceType: 'volume',
          Tags: [
            { Key: 'Name', Value: 'v1' },
            { Key: 'stowage.io/volume', Value: 'v1' },
          ],
        },
      ],
    });
    expect(v).toEqual({
      id: VOL,
      sizeGiB: 10,
      state: 'creating',
      availabilityZone: 'us-east-1a',
      type: 'gp3',
      tags: { Name: 'v1' },
      attachments: [],
    });
  });

  it('sends every optional CreateVolume field when given, and no Size for a snapshot without one', async () => {
    mock.on(CreateVolumeCommand).resolves({ VolumeId: VOL, SnapshotId: 'snap-0123456789abcdef0' });
    const v = await ec2.createVolume({
      clientToken: 'tok-2',
      type: 'io2',
      iops: 5000,
      throughput: 250,
      encrypted: false,
      kmsKeyId: 'alias/k',
      snapshotId: 'snap-0123456789abcdef0',
      availabilityZone: 'eu-west-1b',
      tags: {},
    });
    expect(mock.commandCalls(CreateVolumeCommand)[0]?.args[0].input).toEqual({
      ClientToken: 'tok-2',
      AvailabilityZone: 'eu-west-1b',
      VolumeType: 'io2',
      Iops: 5000,
      Throughput: 250,
      Encrypted: false,
      KmsKeyId: 'alias/k',
      SnapshotId: 'snap-0123456789abcdef0',
      TagSpecifications: [{ ResourceType: 'volume', Tags: [] }],
    });
    expect(v.snapshotId).toBe('snap-0123456789abcdef0');
  });

  it('maps DescribeVolumes, attachments included', async () => {
    mock.on(DescribeVolumesCommand, { VolumeIds: [VOL] }).resolves({
      Volumes: [
        {
          VolumeId: VOL,
          Size: 20,
          State: 'in-use',
          AvailabilityZone: 'us-east-1a',
          VolumeType: 'gp2',
          Tags: [{ Key: 'stowage.io/volume', Value: 'v1' }],
          Attachments: [{ InstanceId: INST, Device: '/dev/xvdf', State: 'attached' }],
        },
      ],
    });
    expect(await ec2.describeVolume(VOL)).toEqual({
      id: VOL,
      sizeGiB: 20,
      state: 'in-use',
      availabilityZone: 'us-east-1a',
      type: 'gp2',
      tags: { 'stowage.io/volume': 'v1' },
      attachments: [{ instanceId: INST, device: '/dev/xvdf', state: 'attached' }],
    });
  });

  it('answers undefined for a volume EC2 does not know (InvalidVolume.NotFound)', async () => {
    mock
      .on(DescribeVolumesCommand)
      .rejects(awsError('InvalidVolume.NotFound', `The volume '${VOL}' does not exist.`));
    expect(await ec2.describeVolume(VOL)).toBeUndefined();
  });

  it('finds volumes by tag with a tag: filter', async () => {
    mock.on(DescribeVolumesCommand).resolves({
      Volumes: [
        { VolumeId: VOL, Size: 1, State: 'creating', AvailabilityZone: 'us-east-1a', VolumeType: 'gp3' },
      ],
    });
    const found = await ec2.findVolumesByTag('stowage.io/create-token', 'abc');
    expect(found.map((v) => [v.id, v.state])).toEqual([[VOL, 'creating']]);
    expect(mock.commandCalls(DescribeVolumesCommand)[0]?.args[0].input).toEqual({
      Filters: [{ Name: 'tag:stowage.io/create-token', Values: ['abc'] }],
    });
  });

  it('answers undefined when DescribeVolumes lists nothing', async () => {
    mock.on(DescribeVolumesCommand).resolves({ Volumes: [] });
    expect(await ec2.describeVolume(VOL)).toBeUndefined();
  });

  it('treats DeleteVolume of a volume that is gone as success', async () => {
    mock
      .on(DeleteVolumeCommand)
      .rejects(awsError('InvalidVolume.NotFound', `The volume '${VOL}' does not exist.`));
    await ec2.deleteVolume(VOL);
    expect(mock.commandCalls(DeleteVolumeCommand)[0]?.args[0].input).toEqual({ VolumeId: VOL });
  });

  it('passes DeleteVolume of an attached volume on as IN_USE', async () => {
    mock
      .on(DeleteVolumeCommand)
      .rejects(awsError('VolumeInUse', `Volume ${VOL} is currently attached to ${INST}`));
    const err = await failure(ec2.deleteVolume(VOL));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `DeleteVolume ${VOL} failed: VolumeInUse: Volume ${VOL} is currently attached to ${INST}`,
    );
  });

  it('sends AttachVolume with the device name', async () => {
    mock.on(AttachVolumeCommand).resolves({ State: 'attaching' });
    await ec2.attachVolume(VOL, INST, '/dev/xvdf');
    expect(mock.commandCalls(AttachVolumeCommand)[0]?.args[0].input).toEqual({
      VolumeId: VOL,
      InstanceId: INST,
      Device: '/dev/xvdf',
    });
  });

  it('reports a device name in use as INVALID_ARGUMENT with the name in the message', async () => {
    mock
      .on(AttachVolumeCommand)
      .rejects(
        awsError(
          'InvalidParameterValue',
          "Invalid value '/dev/xvdf' for unixDevice. Attachment point /dev/xvdf is already in use",
        ),
      );
    const err = await failure(ec2.attachVolume(VOL, INST, '/dev/xvdf'));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(
      /^AttachVolume vol-\w+ to i-\w+ as \/dev\/xvdf failed: InvalidParameterValue: .*already in use$/,
    );
  });

  it('marks a device name in use (and only that refusal) with details.reason, for callers to pick another', async () => {
    mock
      .on(AttachVolumeCommand)
      .rejectsOnce(
        awsError(
          'InvalidParameterValue',
          "Invalid value '/dev/xvdf' for unixDevice. Attachment point /dev/xvdf is already in use",
        ),
      )
      .rejectsOnce(awsError('InvalidParameterValue', 'Value (/dev/sdz9) for parameter device is invalid.'));
    const inUse = await failure(ec2.attachVolume(VOL, INST, '/dev/xvdf'));
    expect(inUse.details).toEqual({ awsError: 'InvalidParameterValue', reason: DEVICE_NAME_IN_USE });
    expect(inUse.retryable).toBe(false);
    const invalid = await failure(ec2.attachVolume(VOL, INST, '/dev/sdz9'));
    expect(invalid.code).toBe('INVALID_ARGUMENT');
    expect(invalid.details).toEqual({ awsError: 'InvalidParameterValue' });
  });

  it('sends DetachVolume with Force false unless asked, and true when asked', async () => {
    mock.on(DetachVolumeCommand).resolves({});
    await ec2.detachVolume(VOL, INST);
    await ec2.detachVolume(VOL, INST, { force: true });
    expect(mock.commandCalls(DetachVolumeCommand).map((c) => c.args[0].input)).toEqual([
      { VolumeId: VOL, InstanceId: INST, Force: false },
      { VolumeId: VOL, InstanceId: INST, Force: true },
    ]);
  });

  it('treats DetachVolume of a volume that is not attached (IncorrectState) or gone as success', async () => {
    mock
      .on(DetachVolumeCommand)
      .rejectsOnce(awsError('IncorrectState', `Volume '${VOL}' is in the 'available' state.`))
      .rejectsOnce(awsError('InvalidVolume.NotFound', `The volume '${VOL}' does not exist.`))
      .rejectsOnce(awsError('InvalidAttachment.NotFound', `Volume '${VOL}' is not attached to '${INST}'.`));
    await ec2.detachVolume(VOL, INST);
    await ec2.detachVolume(VOL, INST);
    await ec2.detachVolume(VOL, INST);
    expect(mock.commandCalls(DetachVolumeCommand)).toHaveLength(3);
  });

  it('passes other DetachVolume failures on', async () => {
    mock.on(DetachVolumeCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized.'));
    expect((await failure(ec2.detachVolume(VOL, INST))).code).toBe('PERMISSION_DENIED');
  });

  it('maps DescribeInstances: zone, private DNS name and the device names in use', async () => {
    mock.on(DescribeInstancesCommand, { InstanceIds: [INST] }).resolves({
      Reservations: [
        {
          Instances: [
            {
              InstanceId: INST,
              Placement: { AvailabilityZone: 'us-east-1a' },
              PrivateDnsName: 'ip-10-0-0-5.ec2.internal',
              BlockDeviceMappings: [
                { DeviceName: '/dev/xvda', Ebs: { VolumeId: 'vol-0000000000000000a' } },
                { DeviceName: '/dev/sdf', Ebs: { VolumeId: VOL } },
                { Ebs: { VolumeId: 'vol-0000000000000000b' } },
              ],
            },
          ],
        },
      ],
    });
    expect(await ec2.describeInstance(INST)).toEqual({
      id: INST,
      availabilityZone: 'us-east-1a',
      privateDnsName: 'ip-10-0-0-5.ec2.internal',
      devices: ['/dev/xvda', '/dev/sdf'],
    });
  });

  it('answers undefined for an instance EC2 does not know, or an empty answer', async () => {
    mock
      .on(DescribeInstancesCommand)
      .rejectsOnce(awsError('InvalidInstanceID.NotFound', `The instance ID '${INST}' does not exist`))
      .resolvesOnce({ Reservations: [] });
    expect(await ec2.describeInstance(INST)).toBeUndefined();
    expect(await ec2.describeInstance(INST)).toBeUndefined();
  });

  it('finds an instance by its private DNS name with a filter', async () => {
    mock.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [{ InstanceId: INST, Placement: { AvailabilityZone: 'us-east-1b' } }] }],
    });
    expect(await ec2.findInstanceByPrivateDnsName('ip-10-0-0-5.ec2.internal')).toEqual({
      id: INST,
      availabilityZone: 'us-east-1b',
      devices: [],
    });
    expect(mock.commandCalls(DescribeInstancesCommand)[0]?.args[0].input).toEqual({
      Filters: [{ Name: 'private-dns-name', Values: ['ip-10-0-0-5.ec2.internal'] }],
    });
  });

  it('describes a snapshot by id, and answers undefined for one that does not exist', async () => {
    mock
      .on(DescribeSnapshotsCommand)
      .resolvesOnce({ Snapshots: [{ SnapshotId: 'snap-0123456789abcdef0', VolumeSize: 100 }] })
      .rejectsOnce(
        awsError('InvalidSnapshot.NotFound', "The snapshot 'snap-0123456789abcdef0' does not exist."),
      );
    expect(await ec2.describeSnapshot('snap-0123456789abcdef0')).toEqual({
      id: 'snap-0123456789abcdef0',
      sizeGiB: 100,
    });
    expect(await ec2.describeSnapshot('snap-0123456789abcdef0')).toBeUndefined();
    expect(mock.commandCalls(DescribeSnapshotsCommand)[0]?.args[0].input).toEqual({
      SnapshotIds: ['snap-0123456789abcdef0'],
    });
  });

  it('finds snapshots by tag with a tag: filter and picks the newest', async () => {
    mock.on(DescribeSnapshotsCommand).resolves({
      Snapshots: [
        { SnapshotId: 'snap-00000000000000001', VolumeSize: 8, StartTime: new Date('2024-01-01T00:00:00Z') },
        { SnapshotId: 'snap-00000000000000002', VolumeSize: 16, StartTime: new Date('2024-03-01T00:00:00Z') },
        { SnapshotId: 'snap-00000000000000003', VolumeSize: 8, StartTime: new Date('2024-02-01T00:00:00Z') },
        { SnapshotId: 'snap-00000000000000004', VolumeSize: 8 },
      ],
    });
    expect(await ec2.findSnapshotByTag('Name', 'nightly')).toEqual({
      id: 'snap-00000000000000002',
      sizeGiB: 16,
    });
    const input = mock.commandCalls(DescribeSnapshotsCommand)[0]?.args[0].input;
    expect(input?.Filters).toEqual([{ Name: 'tag:Name', Values: ['nightly'] }]);
    // Only this account's snapshots: a stranger's public one with the same tag is never picked.
    expect(input?.OwnerIds).toEqual(['self']);
  });

  it('answers undefined when no snapshot has the tag', async () => {
    mock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
    expect(await ec2.findSnapshotByTag('backup', 'db')).toBeUndefined();
    expect(mock.commandCalls(DescribeSnapshotsCommand)[0]?.args[0].input.Filters).toEqual([
      { Name: 'tag:backup', Values: ['db'] },
    ]);
  });

  it('sends ModifyVolume with the size only and maps the modification', async () => {
    mock.on(ModifyVolumeCommand).resolves({
      VolumeModification: { VolumeId: VOL, ModificationState: 'modifying', TargetSize: 20, OriginalSize: 10 },
    });
    expect(await ec2.modifyVolume(VOL, 20)).toEqual({
      volumeId: VOL,
      state: 'modifying',
      targetSizeGiB: 20,
      originalSizeGiB: 10,
    });
    expect(mock.commandCalls(ModifyVolumeCommand)[0]?.args[0].input).toEqual({ VolumeId: VOL, Size: 20 });
  });

  it("describes a volume's latest modification, with EC2's message when it failed", async () => {
    mock.on(DescribeVolumesModificationsCommand, { VolumeIds: [VOL] }).resolves({
      VolumesModifications: [
        {
          VolumeId: VOL,
          ModificationState: 'completed',
          TargetSize: 20,
          OriginalSize: 10,
          StartTime: new Date('2024-05-01T10:00:00Z'),
        },
        {
          VolumeId: VOL,
          ModificationState: 'failed',
          StatusMessage: 'Internal error',
          TargetSize: 30,
          OriginalSize: 20,
          StartTime: new Date('2024-05-02T10:00:00Z'),
        },
      ],
    });
    expect(await ec2.describeVolumeModification(VOL)).toEqual({
      volumeId: VOL,
      state: 'failed',
      targetSizeGiB: 30,
      originalSizeGiB: 20,
      statusMessage: 'Internal error',
    });
  });

  it('answers undefined for a volume never modified, and passes on a volume that is gone', async () => {
    mock
      .on(DescribeVolumesModificationsCommand)
      .rejectsOnce(
        awsError('InvalidVolumeModification.NotFound', `Modification for volume '${VOL}' does not exist.`),
      )
      .rejectsOnce(awsError('InvalidVolume.NotFound', `The volume '${VOL}' does not exist.`));
    expect(await ec2.describeVolumeModification(VOL)).toBeUndefined();
    const err = await failure(ec2.describeVolumeModification(VOL));
    expect(err.code).toBe('NOT_FOUND');
  });

  it('maps a shrinking ModifyVolume to INVALID_ARGUMENT and one while another runs to BUSY', async () => {
    mock
      .on(ModifyVolumeCommand)
      .rejectsOnce(awsError('InvalidParameterValue', 'New size cannot be smaller than existing size'))
      .rejectsOnce(awsError('IncorrectModificationState', `Volume '${VOL}' is already being modified.`));
    const shrink = await failure(ec2.modifyVolume(VOL, 5));
    expect(shrink.code).toBe('INVALID_ARGUMENT');
    expect(shrink.message).toBe(
      `ModifyVolume ${VOL} to 5 GiB failed: InvalidParameterValue: New size cannot be smaller than existing size`,
    );
    const busy = await failure(ec2.modifyVolume(VOL, 30));
    expect(busy.code).toBe('BUSY');
    expect(busy.retryable).toBe(true);
  });
});

describe('SdkEc2 error mapping', () => {
  it('turns RequestLimitExceeded into a retryable UNAVAILABLE that says what was being done', async () => {
    mock.on(DescribeVolumesCommand).rejects(awsError('RequestLimitExceeded', 'Request limit exceeded.'));
    const err = await failure(ec2.describeVolume(VOL));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(err.message).toBe(
      `DescribeVolumes ${VOL} failed: RequestLimitExceeded: Request limit exceeded. ` +
        '(AWS did not serve the request; it was retried and can be tried again later)',
    );
    expect(err.details).toEqual({ awsError: 'RequestLimitExceeded' });
  });

  it('turns UnauthorizedOperation into PERMISSION_DENIED with the IAM hint', async () => {
    mock
      .on(CreateVolumeCommand)
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.'));
    const err = await failure(
      ec2.createVolume({
        clientToken: 't',
        type: 'gp3',
        sizeGiB: 1,
        availabilityZone: 'us-east-1a',
        tags: {},
      }),
    );
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.retryable).toBe(false);
    expect(err.message).toBe(
      'CreateVolume in us-east-1a failed: UnauthorizedOperation: You are not authorized to perform this ' +
        'operation. (check the IAM permissions listed in the README)',
    );
  });

  it('turns InvalidVolume.ZoneMismatch into INVALID_ARGUMENT', async () => {
    mock
      .on(AttachVolumeCommand)
      .rejects(
        awsError('InvalidVolume.ZoneMismatch', 'The volume is not in the same availability zone as instance'),
      );
    const err = await failure(ec2.attachVolume(VOL, INST, '/dev/xvdf'));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.retryable).toBe(false);
    expect(err.message).toBe(
      `AttachVolume ${VOL} to ${INST} as /dev/xvdf failed: InvalidVolume.ZoneMismatch: ` +
        'The volume is not in the same availability zone as instance',
    );
  });

  it('turns an unknown zone (InvalidZone.NotFound) into INVALID_ARGUMENT naming it', async () => {
    mock
      .on(CreateVolumeCommand)
      .rejects(awsError('InvalidZone.NotFound', "The zone 'us-east-1z' does not exist."));
    const err = await failure(
      ec2.createVolume({
        clientToken: 't',
        type: 'gp3',
        sizeGiB: 1,
        availabilityZone: 'us-east-1z',
        tags: {},
      }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(
      "CreateVolume in us-east-1z failed: InvalidZone.NotFound: The zone 'us-east-1z' does not exist.",
    );
  });

  it('turns any other Invalid… or Unsupported… error EC2 blames on the request into INVALID_ARGUMENT', async () => {
    mock
      .on(CreateVolumeCommand)
      .rejects(awsError('InvalidVolumeType.Unsupported', 'gp9 is not a volume type.'));
    const input = { clientToken: 't', type: 'gp3', sizeGiB: 1, availabilityZone: 'us-east-1a', tags: {} };
    expect((await failure(ec2.createVolume(input))).code).toBe('INVALID_ARGUMENT');
    mock.on(CreateVolumeCommand).rejects(awsError('UnsupportedOperation', 'Not in this zone.'));
    expect((await failure(ec2.createVolume(input))).code).toBe('INVALID_ARGUMENT');
    // The same names from the server's side are not the caller's fault.
    mock.on(CreateVolumeCommand).rejects(awsError('InvalidSomething', 'Broken.', 'server'));
    expect((await failure(ec2.createVolume(input))).code).toBe('INTERNAL');
  });

  it('turns an unknown AWS error into INTERNAL and keeps the SDK error as the cause', async () => {
    const sdkErr = awsError('SomethingNew', 'A new kind of failure.', 'server');
    mock.on(DescribeVolumesCommand).rejects(sdkErr);
    const err = await failure(ec2.describeVolume(VOL));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe(`DescribeVolumes ${VOL} failed: SomethingNew: A new kind of failure.`);
    expect(err.cause).toBe(sdkErr);
  });

  it('turns a refused connection into UNAVAILABLE', async () => {
    mock.on(DescribeInstancesCommand).rejects(new Error('connect ECONNREFUSED 127.0.0.1:4566'));
    const err = await failure(ec2.describeInstance(INST));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/^DescribeInstances i-\w+ failed: Unknown: connect ECONNREFUSED/);
  });
});

describe('fromAwsError', () => {
  it('keeps a StowageError as it is', () => {
    const original = new StowageError('TIMEOUT', 'took too long');
    expect(fromAwsError(original, 'DescribeVolumes')).toBe(original);
  });

  it('reads the error code from Code, name or code', () => {
    expect(awsErrorName({ Code: 'VolumeInUse', name: 'Error' })).toBe('VolumeInUse');
    expect(awsErrorName(Object.assign(new Error('x'), { name: 'IncorrectState' }))).toBe('IncorrectState');
    expect(awsErrorName({ code: 'ThrottlingException' })).toBe('ThrottlingException');
    expect(awsErrorName(new Error('plain'))).toBeUndefined();
    expect(awsErrorName('a string')).toBeUndefined();
  });

  it.each([
    ['InvalidSnapshot.NotFound', 'NOT_FOUND'],
    ['InvalidInstanceID.NotFound', 'NOT_FOUND'],
    ['VolumeInUse', 'IN_USE'],
    ['IncorrectState', 'CONFLICT'],
    ['IdempotentParameterMismatch', 'CONFLICT'],
    ['InvalidParameterCombination', 'INVALID_ARGUMENT'],
    ['AttachmentLimitExceeded', 'UNAVAILABLE'],
    ['AuthFailure', 'PERMISSION_DENIED'],
    ['InternalError', 'UNAVAILABLE'],
    ['TimeoutError', 'UNAVAILABLE'],
  ])('maps %s to %s', (name, code) => {
    expect(fromAwsError(awsError(name, 'm'), 'doing').code).toBe(code);
  });

  it('wraps a non-Error throw', () => {
    const err = fromAwsError('boom', 'DeleteVolume vol-1');
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe('DeleteVolume vol-1 failed: Unknown: boom');
  });
});
