import {
  AccessPointAlreadyExists,
  AccessPointLimitExceeded,
  AccessPointNotFound,
  CreateAccessPointCommand,
  CreateFileSystemCommand,
  CreateMountTargetCommand,
  DeleteAccessPointCommand,
  DeleteFileSystemCommand,
  DeleteMountTargetCommand,
  DescribeAccessPointsCommand,
  DescribeFileSystemsCommand,
  DescribeMountTargetSecurityGroupsCommand,
  DescribeMountTargetsCommand,
  EFSClient,
  EFSServiceException,
  FileSystemAlreadyExists,
  FileSystemInUse,
  FileSystemNotFound,
  IncorrectFileSystemLifeCycleState,
  MountTargetConflict,
  MountTargetNotFound,
  SecurityGroupNotFound,
  SubnetNotFound,
  ThrottlingException,
} from '@aws-sdk/client-efs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sdkClientConfig, sdkError } from '../../helpers/aws-sdk.js';
import { until } from '../../helpers/deadline.js';
import { FakeEfs } from './efs-endpoint.js';

function client(url: string, maxAttempts = 1): EFSClient {
  return new EFSClient(sdkClientConfig(url, maxAttempts));
}

/** The SDK exception a call rejects with. */
const efsError = (p: Promise<unknown>) => sdkError(p, EFSServiceException);

describe('FakeEfs through @aws-sdk/client-efs', () => {
  let fake: FakeEfs;
  let efs: EFSClient;

  beforeEach(async () => {
    fake = await FakeEfs.start({ stateDelayMs: 50 });
    fake.addSubnet({ subnetId: 'subnet-a', availabilityZone: 'us-east-1a', ip: '10.0.2.2' });
    fake.addSubnet({ subnetId: 'subnet-a2', availabilityZone: 'us-east-1a' });
    fake.addSubnet({ subnetId: 'subnet-b', availabilityZone: 'us-east-1b' });
    fake.network.addSecurityGroup({ groupId: 'sg-0abc' });
    efs = client(fake.url);
  });

  afterEach(async () => {
    efs.destroy();
    await fake.stop();
    expect(fake.errors).toEqual([]);
  });

  async function availableFs(token: string): Promise<string> {
    const fs = await efs.send(new CreateFileSystemCommand({ CreationToken: token }));
    const id = fs.FileSystemId as string;
    await until(`${id} available`, async () => {
      const d = await efs.send(new DescribeFileSystemsCommand({ FileSystemId: id }));
      return d.FileSystems?.[0]?.LifeCycleState === 'available' ? true : undefined;
    });
    return id;
  }

  it('creates a file system once per creation token and reports it creating, then available', async () => {
    const created = await efs.send(
      new CreateFileSystemCommand({
        CreationToken: 'tok-1',
        PerformanceMode: 'generalPurpose',
        ThroughputMode: 'elastic',
        Encrypted: true,
        KmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/abc',
        Tags: [{ Key: 'Name', Value: 'vol1' }],
      }),
    );
    expect(created.$metadata.httpStatusCode).toBe(201);
    expect(created.FileSystemId).toMatch(/^fs-[0-9a-f]{17}$/);
    expect(created.LifeCycleState).toBe('creating');
    expect(created.CreationTime).toBeInstanceOf(Date);
    expect(Math.abs((created.CreationTime as Date).getTime() - Date.now())).toBeLessThan(5000);
    expect(created).toMatchObject({
      CreationToken: 'tok-1',
      Name: 'vol1',
      Encrypted: true,
      KmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/abc',
      ThroughputMode: 'elastic',
      NumberOfMountTargets: 0,
      Tags: [{ Key: 'Name', Value: 'vol1' }],
    });
    expect(created.SizeInBytes?.Value).toBeGreaterThan(0);

    const again = await efsError(efs.send(new CreateFileSystemCommand({ CreationToken: 'tok-1' })));
    expect(again).toBeInstanceOf(FileSystemAlreadyExists);
    expect(again.name).toBe('FileSystemAlreadyExists');
    expect(again.$metadata.httpStatusCode).toBe(409);
    expect((again as FileSystemAlreadyExists).FileSystemId).toBe(created.FileSystemId);
    expect(fake.fileSystems).toHaveLength(1);

    const id = created.FileSystemId as string;
    await until('available', async () => {
      const d = await efs.send(new DescribeFileSystemsCommand({ FileSystemId: id }));
      return d.FileSystems?.[0]?.LifeCycleState === 'available' ? true : undefined;
    });
    expect(fake.fileSystems[0]?.state).toBe('available');
  });

  it('describes by id, by creation token, all, with paging; unknown id is FileSystemNotFound', async () => {
    const a = await efs.send(new CreateFileSystemCommand({ CreationToken: 'a' }));
    await efs.send(new CreateFileSystemCommand({ CreationToken: 'b' }));
    await efs.send(new CreateFileSystemCommand({ CreationToken: 'c' }));

    const byToken = await efs.send(new DescribeFileSystemsCommand({ CreationToken: 'a' }));
    expect(byToken.FileSystems?.map((f) => f.FileSystemId)).toEqual([a.FileSystemId]);
    const none = await efs.send(new DescribeFileSystemsCommand({ CreationToken: 'zzz' }));
    expect(none.FileSystems).toEqual([]);
    const all = await efs.send(new DescribeFileSystemsCommand({}));
    expect(all.FileSystems?.map((f) => f.CreationToken)).toEqual(['a', 'b', 'c']);

    const p1 = await efs.send(new DescribeFileSystemsCommand({ MaxItems: 2 }));
    expect(p1.FileSystems).toHaveLength(2);
    expect(p1.NextMarker).toBeDefined();
    const p2 = await efs.send(new DescribeFileSystemsCommand({ MaxItems: 2, Marker: p1.NextMarker }));
    expect(p2.FileSystems?.map((f) => f.CreationToken)).toEqual(['c']);
    expect(p2.NextMarker).toBeUndefined();

    const err = await efsError(
      efs.send(new DescribeFileSystemsCommand({ FileSystemId: 'fs-0123456789abcdef0' })),
    );
    expect(err).toBeInstanceOf(FileSystemNotFound);
    expect(err.$metadata.httpStatusCode).toBe(404);
    expect(fake.calls.at(-1)).toMatchObject({
      operation: 'DescribeFileSystems',
      params: { FileSystemId: 'fs-0123456789abcdef0' },
      error: 'FileSystemNotFound',
    });
  });

  it('makes one mount target per AZ, with the zone from the subnet table and the forced IP', async () => {
    const fsId = await availableFs('mt');
    const mt = await efs.send(
      new CreateMountTargetCommand({ FileSystemId: fsId, SubnetId: 'subnet-a', SecurityGroups: ['sg-0abc'] }),
    );
    expect(mt).toMatchObject({
      FileSystemId: fsId,
      SubnetId: 'subnet-a',
      AvailabilityZoneName: 'us-east-1a',
      AvailabilityZoneId: 'use1-az1',
      IpAddress: '10.0.2.2',
      LifeCycleState: 'creating',
    });
    expect(mt.MountTargetId).toMatch(/^fsmt-[0-9a-f]{17}$/);
    expect(fake.calls.at(-1)?.body).toEqual({
      FileSystemId: fsId,
      SubnetId: 'subnet-a',
      SecurityGroups: ['sg-0abc'],
    });

    const conflict = await efsError(
      efs.send(new CreateMountTargetCommand({ FileSystemId: fsId, SubnetId: 'subnet-a2' })),
    );
    expect(conflict).toBeInstanceOf(MountTargetConflict);
    expect(conflict.$metadata.httpStatusCode).toBe(409);

    const b = await efs.send(
      new CreateMountTargetCommand({ FileSystemId: fsId, SubnetId: 'subnet-b', IpAddress: '10.0.3.7' }),
    );
    expect(b).toMatchObject({ AvailabilityZoneName: 'us-east-1b', IpAddress: '10.0.3.7' });

    const noSubnet = await efsError(
      efs.send(new CreateMountTargetCommand({ FileSystemId: fsId, SubnetId: 'subnet-nope' })),
    );
    expect(noSubnet).toBeInstanceOf(SubnetNotFound);

    const byFs = await efs.send(new DescribeMountTargetsCommand({ FileSystemId: fsId }));
    expect(byFs.MountTargets?.map((m) => m.AvailabilityZoneName)).toEqual(['us-east-1a', 'us-east-1b']);
    const byId = await until('mount target available', async () => {
      const d = await efs.send(new DescribeMountTargetsCommand({ MountTargetId: mt.MountTargetId }));
      return d.MountTargets?.[0]?.LifeCycleState === 'available' ? d : undefined;
    });
    expect(byId.MountTargets).toHaveLength(1);

    const sgs = await efs.send(
      new DescribeMountTargetSecurityGroupsCommand({ MountTargetId: mt.MountTargetId }),
    );
    expect(sgs.SecurityGroups).toEqual(['sg-0abc']);

    const fsDesc = await efs.send(new DescribeFileSystemsCommand({ FileSystemId: fsId }));
    expect(fsDesc.FileSystems?.[0]?.NumberOfMountTargets).toBe(2);
    expect(fake.mountTargets.map((m) => m.ipAddress).sort()).toEqual(['10.0.2.2', '10.0.3.7']);
  });

  it("refuses a security group that does not exist in the subnet's VPC, as EFS does", async () => {
    const fsId = await availableFs('sg');
    fake.network.addSubnet({ subnetId: 'subnet-other', availabilityZone: 'us-east-1c', vpcId: 'vpc-other' });
    fake.network.addSecurityGroup({ groupId: 'sg-0other', vpcId: 'vpc-other' });
    for (const groups of [['sg-0nope'], ['sg-0abc', 'sg-0other']]) {
      const err = await efsError(
        efs.send(
          new CreateMountTargetCommand({ FileSystemId: fsId, SubnetId: 'subnet-a', SecurityGroups: groups }),
        ),
      );
      expect(err).toBeInstanceOf(SecurityGroupNotFound);
      expect(err.$metadata.httpStatusCode).toBe(400);
    }
    expect(fake.mountTargets).toEqual([]);
    // The VPC's default group (made with its first subnet) exists.
    await efs.send(
      new CreateMountTargetCommand({
        FileSystemId: fsId,
        SubnetId: 'subnet-a',
        SecurityGroups: ['sg-0000000000000fake'],
      }),
    );
  });

  it('refuses mount targets while the file system is creating', async () => {
    const fs = await efs.send(new CreateFileSystemCommand({ CreationToken: 'young' }));
    const err = await efsError(
      efs.send(new CreateMountTargetCommand({ FileSystemId: fs.FileSystemId, SubnetId: 'subnet-a' })),
    );
    expect(err).toBeInstanceOf(IncorrectFileSystemLifeCycleState);
  });

  it('creates access points with a POSIX user and root directory, idempotent by client token', async () => {
    const fsId = await availableFs('ap');
    const input = {
      FileSystemId: fsId,
      ClientToken: 'ap-token-1',
      PosixUser: { Uid: 1000, Gid: 1001 },
      RootDirectory: {
        Path: '/vols/v1',
        CreationInfo: { OwnerUid: 1000, OwnerGid: 1001, Permissions: '0750' },
      },
      Tags: [{ Key: 'Name', Value: 'v1' }],
    };
    const ap = await efs.send(new CreateAccessPointCommand(input));
    expect(ap.AccessPointId).toMatch(/^fsap-[0-9a-f]{17}$/);
    expect(ap).toMatchObject({
      FileSystemId: fsId,
      ClientToken: 'ap-token-1',
      Name: 'v1',
      PosixUser: { Uid: 1000, Gid: 1001 },
      RootDirectory: {
        Path: '/vols/v1',
        CreationInfo: { OwnerUid: 1000, OwnerGid: 1001, Permissions: '0750' },
      },
      LifeCycleState: 'creating',
      AccessPointArn: `arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/${ap.AccessPointId}`,
    });

    const retry = await efs.send(new CreateAccessPointCommand(input));
    expect(retry.AccessPointId).toBe(ap.AccessPointId);
    const reuse = await efsError(
      efs.send(new CreateAccessPointCommand({ ...input, RootDirectory: { Path: '/other' } })),
    );
    expect(reuse).toBeInstanceOf(AccessPointAlreadyExists);
    expect((reuse as AccessPointAlreadyExists).AccessPointId).toBe(ap.AccessPointId);

    // The SDK fills in a ClientToken when none is given.
    const auto = await efs.send(new CreateAccessPointCommand({ FileSystemId: fsId }));
    expect(auto.ClientToken).toMatch(/\S/);
    expect(auto.RootDirectory?.Path).toBe('/');

    const byFs = await efs.send(new DescribeAccessPointsCommand({ FileSystemId: fsId }));
    expect(byFs.AccessPoints?.map((a) => a.AccessPointId)).toEqual([ap.AccessPointId, auto.AccessPointId]);
    const byId = await until('access point available', async () => {
      const d = await efs.send(new DescribeAccessPointsCommand({ AccessPointId: ap.AccessPointId }));
      return d.AccessPoints?.[0]?.LifeCycleState === 'available' ? d : undefined;
    });
    expect(byId.AccessPoints).toHaveLength(1);
    expect(fake.accessPoints[0]).toMatchObject({
      posixUser: { uid: 1000, gid: 1001 },
      rootDirectory: {
        path: '/vols/v1',
        creationInfo: { ownerUid: 1000, ownerGid: 1001, permissions: '0750' },
      },
      tags: { Name: 'v1' },
    });

    await efs.send(new DeleteAccessPointCommand({ AccessPointId: ap.AccessPointId }));
    await until('access point gone', async () => {
      const d = await efs.send(new DescribeAccessPointsCommand({ FileSystemId: fsId }));
      return d.AccessPoints?.length === 1 ? true : undefined;
    });
    const gone = await efsError(
      efs.send(new DescribeAccessPointsCommand({ AccessPointId: ap.AccessPointId })),
    );
    expect(gone).toBeInstanceOf(AccessPointNotFound);
  });

  it('limits access points per file system', async () => {
    await fake.stop();
    fake = await FakeEfs.start({ stateDelayMs: 0, accessPointLimit: 2 });
    efs.destroy();
    efs = client(fake.url);
    const fs = await efs.send(new CreateFileSystemCommand({ CreationToken: 'lim' }));
    await efs.send(new CreateAccessPointCommand({ FileSystemId: fs.FileSystemId }));
    await efs.send(new CreateAccessPointCommand({ FileSystemId: fs.FileSystemId }));
    const err = await efsError(efs.send(new CreateAccessPointCommand({ FileSystemId: fs.FileSystemId })));
    expect(err).toBeInstanceOf(AccessPointLimitExceeded);
    expect(err.$metadata.httpStatusCode).toBe(403);
  });

  it('deletes in order: the file system is in use while mount targets exist', async () => {
    const fsId = await availableFs('del');
    const mt = await efs.send(new CreateMountTargetCommand({ FileSystemId: fsId, SubnetId: 'subnet-a' }));
    await efs.send(new CreateAccessPointCommand({ FileSystemId: fsId }));

    const inUse = await efsError(efs.send(new DeleteFileSystemCommand({ FileSystemId: fsId })));
    expect(inUse).toBeInstanceOf(FileSystemInUse);
    expect(inUse.$metadata.httpStatusCode).toBe(409);

    // 'deleting' lasts long enough to be seen between two requests on a loaded machine (50 ms
    // was not), and short enough for the waits below.
    fake.stateDelayMs = 1500;
    const del = await efs.send(new DeleteMountTargetCommand({ MountTargetId: mt.MountTargetId }));
    expect(del.$metadata.httpStatusCode).toBe(204);
    const deleting = await efs.send(new DescribeMountTargetsCommand({ MountTargetId: mt.MountTargetId }));
    expect(deleting.MountTargets?.[0]?.LifeCycleState).toBe('deleting');
    // Still in use until the mount target is gone.
    expect(await efsError(efs.send(new DeleteFileSystemCommand({ FileSystemId: fsId })))).toBeInstanceOf(
      FileSystemInUse,
    );
    await until('mount target gone', async () => {
      const d = await efs.send(new DescribeMountTargetsCommand({ FileSystemId: fsId }));
      return d.MountTargets?.length === 0 ? true : undefined;
    });
    const mtGone = await efsError(
      efs.send(new DescribeMountTargetsCommand({ MountTargetId: mt.MountTargetId })),
    );
    expect(mtGone).toBeInstanceOf(MountTargetNotFound);

    await efs.send(new DeleteFileSystemCommand({ FileSystemId: fsId }));
    const d = await efs.send(new DescribeFileSystemsCommand({ FileSystemId: fsId }));
    expect(d.FileSystems?.[0]?.LifeCycleState).toBe('deleting');
    expect(fake.accessPoints.every((a) => a.state === 'deleting')).toBe(true);
    await until('file system gone', async () => {
      try {
        await efs.send(new DescribeFileSystemsCommand({ FileSystemId: fsId }));
        return undefined;
      } catch (err) {
        if (err instanceof FileSystemNotFound) return true;
        throw err;
      }
    });
    expect(fake.fileSystems).toEqual([]);
    expect(fake.accessPoints).toEqual([]);
    expect(fake.calls.filter((c) => c.operation === 'DeleteFileSystem').map((c) => c.error)).toEqual([
      'FileSystemInUse',
      'FileSystemInUse',
      undefined,
    ]);
  });

  it('seeds an existing file system with mount targets', async () => {
    fake.addFileSystem({
      fileSystemId: 'fs-0aaaaaaaaaaaaaaa1',
      tags: { Name: 'seeded' },
      mountTargets: [{ subnetId: 'subnet-a' }, { subnetId: 'subnet-b', ip: '10.0.9.9' }],
    });
    const d = await efs.send(new DescribeFileSystemsCommand({ FileSystemId: 'fs-0aaaaaaaaaaaaaaa1' }));
    expect(d.FileSystems?.[0]).toMatchObject({
      LifeCycleState: 'available',
      Name: 'seeded',
      NumberOfMountTargets: 2,
    });
    const mts = await efs.send(new DescribeMountTargetsCommand({ FileSystemId: 'fs-0aaaaaaaaaaaaaaa1' }));
    expect(mts.MountTargets?.map((m) => [m.AvailabilityZoneName, m.IpAddress, m.LifeCycleState])).toEqual([
      ['us-east-1a', '10.0.2.2', 'available'],
      ['us-east-1b', '10.0.9.9', 'available'],
    ]);
  });

  it('surfaces injected errors as the SDK exceptions', async () => {
    fake.failNext('DescribeFileSystems', { code: 'FileSystemNotFound' });
    fake.failNext('DeleteMountTarget', { code: 'MountTargetNotFound', message: 'no such mount target' });
    fake.failNext('CreateAccessPoint', { code: 'AccessPointLimitExceeded' });
    fake.failNext('DescribeMountTargets', { code: 'ThrottlingException', times: 2 });

    const a = await efsError(efs.send(new DescribeFileSystemsCommand({})));
    expect(a).toBeInstanceOf(FileSystemNotFound);
    expect(a.name).toBe('FileSystemNotFound');
    expect(a.$metadata.httpStatusCode).toBe(404);
    expect((a as FileSystemNotFound).ErrorCode).toBe('FileSystemNotFound');

    const b = await efsError(efs.send(new DeleteMountTargetCommand({ MountTargetId: 'fsmt-0123' })));
    expect(b).toBeInstanceOf(MountTargetNotFound);
    expect(b.message).toBe('no such mount target');
    expect(b.$metadata.httpStatusCode).toBe(404);

    const c = await efsError(
      efs.send(new CreateAccessPointCommand({ FileSystemId: 'fs-0123456789abcdef0' })),
    );
    expect(c).toBeInstanceOf(AccessPointLimitExceeded);
    expect(c.name).toBe('AccessPointLimitExceeded');
    expect(c.$metadata.httpStatusCode).toBe(403);

    const t = await efsError(
      efs.send(new DescribeMountTargetsCommand({ FileSystemId: 'fs-0123456789abcdef0' })),
    );
    expect(t).toBeInstanceOf(ThrottlingException);
    expect(t.name).toBe('ThrottlingException');
    expect(t.$metadata.httpStatusCode).toBe(429);
    expect(t.$metadata.attempts).toBe(1); // maxAttempts 1: no retry
    // EFS's model has no @retryable trait: the SDK retries it by name / 429, not by $retryable.
    expect(t.$retryable).toBeUndefined();
    expect(fake.calls.map((x) => x.error)).toEqual([
      'FileSystemNotFound',
      'MountTargetNotFound',
      'AccessPointLimitExceeded',
      'ThrottlingException',
    ]);

    // The one left: '*' matches any operation; failures are consumed in order.
    fake.failNext('*', { code: 'InternalServerError' });
    const d = await efsError(efs.send(new DescribeFileSystemsCommand({})));
    expect(d.name).toBe('InternalServerError');
    expect(d.$fault).toBe('server');
    const t2 = await efsError(
      efs.send(new DescribeMountTargetsCommand({ FileSystemId: 'fs-0123456789abcdef0' })),
    );
    expect(t2).toBeInstanceOf(ThrottlingException);
  });

  it('a client with maxAttempts 3 retries a ThrottlingException', { timeout: 15_000 }, async () => {
    fake.addFileSystem({ fileSystemId: 'fs-0bbbbbbbbbbbbbbb1' });
    fake.failNext('DescribeFileSystems', { code: 'ThrottlingException', times: 2 });
    const retrying = client(fake.url, 3);
    try {
      const d = await retrying.send(new DescribeFileSystemsCommand({ FileSystemId: 'fs-0bbbbbbbbbbbbbbb1' }));
      expect(d.FileSystems?.[0]?.FileSystemId).toBe('fs-0bbbbbbbbbbbbbbb1');
      expect(d.$metadata.attempts).toBe(3);
      expect(fake.calls.map((c) => c.error)).toEqual([
        'ThrottlingException',
        'ThrottlingException',
        undefined,
      ]);

      fake.failNext('DescribeFileSystems', { code: 'ThrottlingException', times: 3 });
      const err = await efsError(retrying.send(new DescribeFileSystemsCommand({})));
      expect(err).toBeInstanceOf(ThrottlingException);
      expect(err.$metadata.attempts).toBe(3);
    } finally {
      retrying.destroy();
    }
  });

  it('answers an unknown route with 404 and an error', async () => {
    const res = await fetch(`${fake.url}/2015-02-01/file-systems/fs-1/nothing-here`, {
      signal: AbortSignal.timeout(5000),
    });
    expect(res.status).toBe(404);
    expect(res.headers.get('x-amzn-errortype')).toBe('UnknownOperationException');
    expect(await res.json()).toMatchObject({ ErrorCode: 'UnknownOperationException' });
    expect(fake.calls.at(-1)?.operation).toBe('Unknown');
  });
});
