import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SdkEfs } from '../../src/cloud/efs.js';
import { FakeEfs } from '../fakes/aws/efs-endpoint.js';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { fakeEndpointOptions } from '../helpers/aws-sdk.js';
import { failure } from '../helpers/failure.js';

/**
 * SdkEfs with the real @aws-sdk/client-efs against the stateful fake EFS endpoint on 127.0.0.1:
 * the requests reach the wire, answers and errors come back through the SDK's own deserialisers.
 */

const FS = 'fs-0123456789abcdef0';
const SUBNET_A = 'subnet-0aaaaaaaaaaaaaaa1';
const SUBNET_B = 'subnet-0bbbbbbbbbbbbbbb2';

let fake: FakeEfs;
let efs: SdkEfs;

function client(maxAttempts = 1): SdkEfs {
  return new SdkEfs(fakeEndpointOptions(fake.url, maxAttempts));
}

useTestAwsCredentials();

beforeAll(async () => {
  fake = await FakeEfs.start({ stateDelayMs: 0 });
  fake.addSubnet({ subnetId: SUBNET_A, availabilityZone: 'us-east-1a', ip: '10.1.0.5' });
  fake.addSubnet({ subnetId: SUBNET_B, availabilityZone: 'us-east-1b', ip: '10.1.1.5' });
  fake.network.addSecurityGroup({ groupId: 'sg-0123456789abcdef0' });
});

beforeEach(() => {
  efs = client();
  fake.stateDelayMs = 0;
});

afterEach(() => {
  expect(fake.errors).toEqual([]);
});

afterAll(async () => {
  await fake.stop();
});

describe('SdkEfs file systems', () => {
  it('creates, describes and deletes a file system; a repeated creation token returns the same one', async () => {
    fake.stateDelayMs = 60_000; // stays `creating` for the whole test
    const made = await efs.createFileSystem({
      creationToken: 'tok-fs-1',
      performanceMode: 'maxIO',
      encrypted: true,
      kmsKeyId: 'alias/stowage',
      tags: { Name: 'v1', 'stowage.io/volume': 'v1' },
    });
    expect(made).toEqual({
      id: expect.stringMatching(/^fs-[0-9a-f]+$/),
      state: 'creating',
      creationToken: 'tok-fs-1',
    });
    const seen = fake.fileSystems.find((f) => f.fileSystemId === made.id);
    expect(seen).toMatchObject({
      performanceMode: 'maxIO',
      throughputMode: 'bursting',
      encrypted: true,
      kmsKeyId: 'alias/stowage',
      tags: { Name: 'v1', 'stowage.io/volume': 'v1' },
    });

    const again = await efs.createFileSystem({ creationToken: 'tok-fs-1', tags: {} });
    expect(again).toEqual(made);
    expect(fake.calls.filter((c) => c.operation === 'CreateFileSystem').map((c) => c.error)).toEqual([
      undefined,
      'FileSystemAlreadyExists',
    ]);
    expect(fake.fileSystems.filter((f) => f.creationToken === 'tok-fs-1')).toHaveLength(1);
    expect(await efs.describeFileSystem(made.id)).toEqual(made);

    await efs.deleteFileSystem(made.id);
    expect(fake.fileSystems.find((f) => f.fileSystemId === made.id)?.state).toBe('deleting');
    fake.stateDelayMs = 0;
  });

  it('answers undefined for a file system that does not exist and treats deleting it as done', async () => {
    expect(await efs.describeFileSystem('fs-0000000000000dead')).toBeUndefined();
    await efs.deleteFileSystem('fs-0000000000000dead');
    const errors = fake.calls.slice(-2).map((c) => [c.operation, c.error]);
    expect(errors).toEqual([
      ['DescribeFileSystems', 'FileSystemNotFound'],
      ['DeleteFileSystem', 'FileSystemNotFound'],
    ]);
  });

  it('maps FileSystemNotFound to NOT_FOUND where it is an error', async () => {
    const err = await failure(efs.describeMountTargets('fs-0000000000000dead'));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toMatch(/^DescribeMountTargets fs-0000000000000dead failed: FileSystemNotFound: /);
    expect(err.details).toEqual({ awsError: 'FileSystemNotFound' });
  });
});

describe('SdkEfs file systems by creation token, provisioned throughput', () => {
  it('finds the file system a creation token made, and nothing for a token never used', async () => {
    const made = await efs.createFileSystem({ creationToken: 'tok-find-1', tags: {} });
    expect(await efs.findFileSystemByCreationToken('tok-find-1')).toMatchObject({ id: made.id });
    expect(await efs.findFileSystemByCreationToken('tok-never-used')).toBeUndefined();
    expect(fake.calls.at(-1)).toMatchObject({
      operation: 'DescribeFileSystems',
      params: { CreationToken: 'tok-never-used' },
    });
  });

  it('sends ProvisionedThroughputInMibps, and an amount EFS refuses comes back as INVALID_ARGUMENT naming it', async () => {
    const made = await efs.createFileSystem({
      creationToken: 'tok-prov-1',
      throughputMode: 'provisioned',
      provisionedThroughputMibps: 128,
      tags: {},
    });
    expect(fake.fileSystems.find((f) => f.fileSystemId === made.id)).toMatchObject({
      throughputMode: 'provisioned',
      provisionedThroughputInMibps: 128,
    });
    const err = await failure(
      efs.createFileSystem({
        creationToken: 'tok-prov-2',
        throughputMode: 'provisioned',
        provisionedThroughputMibps: 5000,
        tags: {},
      }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(/ProvisionedThroughputInMibps 5000/);
  });

  it('maps ThroughputLimitExceeded (not in the shared AWS table) to INVALID_ARGUMENT', async () => {
    fake.failNext('CreateFileSystem', {
      code: 'ThroughputLimitExceeded',
      status: 400,
      message: 'over the limit',
    });
    const err = await failure(efs.createFileSystem({ creationToken: 'tok-prov-3', tags: {} }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe('CreateFileSystem tok-prov-3 failed: ThroughputLimitExceeded: over the limit');
  });
});

describe('SdkEfs mount targets', () => {
  it('creates mount targets with their address and zone, lists them, and deletes them', async () => {
    fake.addFileSystem({ fileSystemId: FS });
    const a = await efs.createMountTarget(FS, SUBNET_A, ['sg-0123456789abcdef0']);
    const b = await efs.createMountTarget(FS, SUBNET_B, []);
    expect(a).toEqual({
      id: expect.stringMatching(/^fsmt-/),
      fileSystemId: FS,
      subnetId: SUBNET_A,
      availabilityZone: 'us-east-1a',
      ip: '10.1.0.5',
      state: 'available',
    });
    expect(fake.mountTargets.find((m) => m.mountTargetId === a.id)?.securityGroups).toEqual([
      'sg-0123456789abcdef0',
    ]);
    // No groups given: none sent, so EFS picks the subnet's default.
    const created = fake.calls.filter((c) => c.operation === 'CreateMountTarget');
    expect(created[1]?.body).toEqual({ FileSystemId: FS, SubnetId: SUBNET_B });

    const listed = await efs.describeMountTargets(FS);
    expect(listed.map((m) => [m.availabilityZone, m.ip, m.state])).toEqual([
      ['us-east-1a', '10.1.0.5', 'available'],
      ['us-east-1b', '10.1.1.5', 'available'],
    ]);
    await efs.deleteMountTarget(a.id);
    await efs.deleteMountTarget(b.id);
    expect(await efs.describeMountTargets(FS)).toEqual([]);
    await efs.deleteMountTarget(a.id); // already gone: success
    expect(fake.calls.at(-1)?.error).toBe('MountTargetNotFound');
    await efs.deleteFileSystem(FS);
    expect(await efs.describeFileSystem(FS)).toBeUndefined();
  });
});

describe('SdkEfs access points', () => {
  const FS2 = 'fs-00000000000000ab2';

  it('creates an access point with its path, POSIX user and creation info; describes and deletes it', async () => {
    fake.addFileSystem({ fileSystemId: FS2 });
    const ap = await efs.createAccessPoint({
      clientToken: 'tok-ap-1',
      fileSystemId: FS2,
      path: '/apps/v1',
      uid: 1000,
      gid: 1001,
      permissions: '750',
      tags: { Name: 'v1' },
    });
    expect(ap).toEqual({
      id: expect.stringMatching(/^fsap-/),
      fileSystemId: FS2,
      path: '/apps/v1',
      state: 'available',
      clientToken: 'tok-ap-1',
      uid: 1000,
      gid: 1001,
      tags: { Name: 'v1' },
    });
    expect(fake.accessPoints.find((a) => a.accessPointId === ap.id)).toMatchObject({
      clientToken: 'tok-ap-1',
      posixUser: { uid: 1000, gid: 1001 },
      rootDirectory: {
        path: '/apps/v1',
        creationInfo: { ownerUid: 1000, ownerGid: 1001, permissions: '750' },
      },
      tags: { Name: 'v1' },
    });
    expect(await efs.describeAccessPoint(ap.id)).toEqual(ap);
    await efs.deleteAccessPoint(ap.id);
    expect(await efs.describeAccessPoint(ap.id)).toBeUndefined();
    await efs.deleteAccessPoint(ap.id); // already gone: success
    expect(fake.calls.at(-1)).toMatchObject({ operation: 'DeleteAccessPoint', error: 'AccessPointNotFound' });
  });

  it('lists every access point of a file system across pages, with tags and client tokens', async () => {
    const FS3 = 'fs-00000000000000ab3';
    fake.addFileSystem({ fileSystemId: FS3 });
    const made: string[] = [];
    for (let i = 0; i < 102; i++) {
      const ap = await efs.createAccessPoint({
        clientToken: `tok-list-${i}`,
        fileSystemId: FS3,
        path: `/p${i}`,
        uid: 0,
        gid: 0,
        permissions: '755',
        tags: { 'stowage.io/volume': `v${i}` },
      });
      made.push(ap.id);
    }
    const listed = await efs.listAccessPoints(FS3);
    expect(listed.map((a) => a.id)).toEqual(made);
    expect(listed[101]).toMatchObject({ clientToken: 'tok-list-101', tags: { 'stowage.io/volume': 'v101' } });
    const pages = fake.calls.filter(
      (c) => c.operation === 'DescribeAccessPoints' && c.params.FileSystemId === FS3,
    );
    expect(pages.map((c) => c.params.NextToken !== undefined)).toEqual([false, true]);
  });

  it('maps AccessPointLimitExceeded to UNAVAILABLE', async () => {
    fake.failNext('CreateAccessPoint', {
      code: 'AccessPointLimitExceeded',
      message: 'too many access points',
    });
    const err = await failure(
      efs.createAccessPoint({
        clientToken: 'tok-ap-2',
        fileSystemId: FS2,
        path: '/x',
        uid: 0,
        gid: 0,
        permissions: '755',
        tags: {},
      }),
    );
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(
      `CreateAccessPoint on ${FS2} failed: AccessPointLimitExceeded: too many access points ` +
        '(AWS did not serve the request; it was retried and can be tried again later)',
    );
  });
});

describe('SdkEfs retries', () => {
  it('retries ThrottlingException within maxAttempts and then succeeds', async () => {
    fake.addFileSystem({ fileSystemId: 'fs-00000000000000ab3' });
    const retrying = client(3);
    fake.failNext('DescribeFileSystems', { code: 'ThrottlingException', message: 'Rate exceeded', times: 2 });
    const before = fake.calls.length;
    expect(await retrying.describeFileSystem('fs-00000000000000ab3')).toMatchObject({ state: 'available' });
    expect(fake.calls.slice(before).map((c) => c.error ?? 'ok')).toEqual([
      'ThrottlingException',
      'ThrottlingException',
      'ok',
    ]);
  });

  it('gives up after maxAttempts with UNAVAILABLE', async () => {
    const retrying = client(2);
    fake.failNext('DescribeMountTargets', {
      code: 'ThrottlingException',
      message: 'Rate exceeded',
      times: 2,
    });
    const before = fake.calls.length;
    const err = await failure(retrying.describeMountTargets(FS));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.details).toEqual({ awsError: 'ThrottlingException' });
    expect(fake.calls.length - before).toBe(2);
  });
});
