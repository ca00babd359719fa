import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VolumeRecord } from '../../src/state/store.js';
import type { FakeEfs } from '../fakes/aws/efs-endpoint.js';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { failure } from '../helpers/failure.js';
import {
  type EfsRuntime,
  FS,
  OTHER_VPC,
  outsideAccessPoint,
  SG,
  SUBNET_A,
  SUBNET_A2,
  SUBNET_B,
  SUBNET_OTHER_VPC,
  useEfsRuntime,
} from './efs-runtime.js';

/**
 * The efs driver's Create and Remove when things go wrong (composition: efs-runtime.ts; the real
 * AWS SDK against the fake EFS and EC2 endpoints). A daemon killed inside a Create is simulated by
 * a step that throws after its effect and an `abandon` that never runs (the process is gone): what
 * is left is exactly the store record and the AWS resources a SIGKILL at that point leaves.
 */

const SG_UNKNOWN = 'sg-0ffffffffffffffff';

type Setup = EfsRuntime & { driver: ReturnType<EfsRuntime['runtime']['registry']['get']> };

let efs: FakeEfs;

useTestAwsCredentials();

const setupRuntime = useEfsRuntime();

/** A fresh runtime over fresh endpoints, FS existing with a mount target in this host's zone. */
async function setup(o: { network?: boolean } = {}): Promise<Setup> {
  const r = await setupRuntime({ efs: { createTimeout: '20s' }, fileSystem: [SUBNET_A], ...o });
  efs = r.efs;
  return { ...r, driver: r.runtime.registry.get('efs') };
}

const create = (s: Setup, name: string, opts: Record<string, string>) =>
  s.runtime.manager.create('efs', name, opts);
const ownFileSystems = () => efs.fileSystems.filter((f) => f.fileSystemId !== FS);
const ownMountTargets = () => efs.mountTargets.filter((m) => m.fileSystemId !== FS);
const calls = (op: string) => efs.calls.filter((c) => c.operation === op);

/**
 * The daemon dies right after `method` of the EFS seam took effect: its answer is never seen, and
 * the failed Create's `abandon` never runs (there is no process left to run it).
 */
function killAfter(s: Setup, method: 'createFileSystem' | 'createMountTarget' | 'createAccessPoint'): void {
  const real = s.sdk[method].bind(s.sdk) as (...a: unknown[]) => Promise<unknown>;
  (s.sdk as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
    await real(...args);
    throw new Error(`SIGKILL after ${method}`);
  };
  const abandon = s.driver.abandon.bind(s.driver);
  s.driver.abandon = async () => {
    s.driver.abandon = abandon;
    s.sdk[method] = real as never;
    throw new Error('SIGKILL: the failed Create is never undone');
  };
}

async function record(s: Setup, name: string): Promise<VolumeRecord | undefined> {
  return s.store.getVolume(name);
}

describe('efs createFileSystem=true: checked before anything is created (defect 2)', () => {
  it.each([
    [
      'an unknown security group',
      { subnets: SUBNET_A, securityGroups: SG_UNKNOWN },
      `driver efs: security group ${SG_UNKNOWN} does not exist in this region; give -o securityGroups= with existing ids`,
    ],
    [
      'an unknown subnet',
      { subnets: `${SUBNET_A},subnet-0ffffffffffffffff` },
      'driver efs: subnet subnet-0ffffffffffffffff does not exist in this region; give -o subnets= with existing subnet ids',
    ],
    [
      'two subnets in one zone',
      { subnets: `${SUBNET_A},${SUBNET_A2}` },
      `driver efs: subnets ${SUBNET_A} and ${SUBNET_A2} are both in us-east-1a, and EFS makes one mount target per zone; give one subnet per zone`,
    ],
    [
      'subnets of two VPCs',
      { subnets: `${SUBNET_A},${SUBNET_OTHER_VPC}` },
      `driver efs: subnets ${SUBNET_A} (vpc-0000000000000fake) and ${SUBNET_OTHER_VPC} (${OTHER_VPC}) are in different VPCs; the mount targets of a file system share one VPC`,
    ],
    [
      "no subnet in this host's zone",
      { subnets: SUBNET_B },
      `driver efs: no subnet is in this host's zone us-east-1a (${SUBNET_B} in us-east-1b), so this host could not reach the new file system; add a subnet of us-east-1a to -o subnets, or give -o mountTargetIp=`,
    ],
  ])('refuses %s with INVALID_ARGUMENT and creates nothing', async (_what, opts, message) => {
    const s = await setup();
    const err = await failure(create(s, 'v1', { createFileSystem: 'true', ...opts }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(message);
    expect(calls('CreateFileSystem')).toEqual([]);
    expect(ownFileSystems()).toEqual([]);
    expect(await record(s, 'v1')).toBeUndefined();
  });

  it('creates with subnets in distinct zones and a security group of their VPC', async () => {
    const s = await setup();
    const vol = await create(s, 'v1', {
      createFileSystem: 'true',
      subnets: `${SUBNET_A},${SUBNET_B}`,
      securityGroups: SG,
      onRemove: 'delete',
    });
    expect(ownMountTargets().map((m) => [m.subnetId, m.securityGroups])).toEqual([
      [SUBNET_A, [SG]],
      [SUBNET_B, [SG]],
    ]);
    expect(vol.fields).toMatchObject({
      fileSystemId: ownFileSystems()[0]?.fileSystemId,
      createdFileSystem: true,
    });
    await s.runtime.manager.remove('efs', 'v1');
    expect(ownFileSystems()).toEqual([]);
  });
});

describe('efs createFileSystem=true: undone when EFS refuses a later step (defect 2)', () => {
  it('deletes the mount target already made and the file system when the second mount target is refused', async () => {
    const s = await setup({ network: false }); // no EC2 look-ups: EFS itself refuses the zone twin
    const err = await failure(
      create(s, 'v1', { createFileSystem: 'true', subnets: `${SUBNET_A},${SUBNET_A2}` }),
    );
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toMatch(
      /^CreateMountTarget fs-[0-9a-f]+ in subnet-0aaaaaaaaaaaaaaa2 failed: MountTargetConflict/,
    );
    expect(calls('CreateMountTarget').map((c) => c.error)).toEqual([undefined, 'MountTargetConflict']);
    expect(calls('DeleteMountTarget')).toHaveLength(1);
    expect(ownMountTargets()).toEqual([]);
    expect(ownFileSystems()).toEqual([]);
    expect(await record(s, 'v1')).toBeUndefined();
  });

  it('deletes the file system when its security group is refused', async () => {
    const s = await setup({ network: false });
    const err = await failure(create(s, 'v1', { createFileSystem: 'true', securityGroups: SG_UNKNOWN }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(/SecurityGroupNotFound/);
    expect(ownFileSystems()).toEqual([]);
  });

  it('logs at error level with the ids what could not be deleted, keeps naming it, and Remove finishes', async () => {
    const s = await setup({ network: false });
    efs.failNext('DeleteFileSystem', { code: 'InternalServerError' }); // once: the Create's own undo
    const err = await failure(
      create(s, 'v1', { createFileSystem: 'true', subnets: `${SUBNET_A},${SUBNET_A2}` }),
    );
    const fsId = ownFileSystems()[0]?.fileSystemId;
    expect(fsId).toBeDefined();
    expect(err.message).toMatch(/MountTargetConflict/);
    expect(err.message).toMatch(
      new RegExp(`could not delete what the unfinished Create of volume v1 made .*${fsId}`),
    );
    expect(err.message).toMatch(/run Remove v1 to retry the cleanup/);
    const loud = s.logged.filter(
      (l) => l.level === 50 && l.msg.startsWith('EFS resources of an unfinished Create'),
    );
    expect(loud).toEqual([expect.objectContaining({ volume: 'v1', fileSystemId: fsId, mountTargetIds: [] })]);
    const left = await record(s, 'v1');
    expect(left).toMatchObject({
      status: 'creating',
      fields: { fileSystemId: fsId, createdFileSystem: true },
    });

    await s.runtime.manager.remove('efs', 'v1');
    expect(ownFileSystems()).toEqual([]);
    expect(await record(s, 'v1')).toBeUndefined();
  });
});

describe('efs Create and Remove against SIGKILL', () => {
  it('a Create killed after CreateFileSystem (id never noted): Remove finds the file system by its creation token', async () => {
    const s = await setup();
    killAfter(s, 'createFileSystem');
    await failure(create(s, 'v1', { createFileSystem: 'true' }));
    const left = await record(s, 'v1');
    expect(left?.status).toBe('creating');
    expect(left?.fields).toEqual({ fileSystemToken: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(ownFileSystems()).toHaveLength(1);

    await s.runtime.manager.remove('efs', 'v1');
    expect(ownFileSystems()).toEqual([]);
    expect(await record(s, 'v1')).toBeUndefined();
    expect(efs.fileSystems.map((f) => f.fileSystemId)).toEqual([FS]); // never what it did not make
  });

  it('a Create killed after CreateFileSystem is finished by the next Create with the same file system', async () => {
    const s = await setup();
    killAfter(s, 'createFileSystem');
    await failure(create(s, 'v1', { createFileSystem: 'true' }));
    const made = ownFileSystems()[0]?.fileSystemId;
    const vol = await create(s, 'v1', { createFileSystem: 'true' });
    expect(vol.status).toBe('ready');
    expect(vol.fields).toMatchObject({ fileSystemId: made, createdFileSystem: true, remotePath: '/v1' });
    expect(ownFileSystems().map((f) => f.fileSystemId)).toEqual([made]);
    expect(ownMountTargets()).toHaveLength(1);
  });

  it('a Create killed after its first mount target: Remove deletes the mount target and the file system', async () => {
    const s = await setup();
    killAfter(s, 'createMountTarget');
    await failure(create(s, 'v1', { createFileSystem: 'true', subnets: `${SUBNET_A},${SUBNET_B}` }));
    expect(ownMountTargets()).toHaveLength(1);
    await s.runtime.manager.remove('efs', 'v1');
    expect(ownMountTargets()).toEqual([]);
    expect(ownFileSystems()).toEqual([]);
  });

  it('a Create killed after a resumed mount target finishes with one mount target per subnet', async () => {
    const s = await setup();
    killAfter(s, 'createMountTarget');
    await failure(create(s, 'v1', { createFileSystem: 'true', subnets: `${SUBNET_A},${SUBNET_B}` }));
    const vol = await create(s, 'v1', { createFileSystem: 'true', subnets: `${SUBNET_A},${SUBNET_B}` });
    expect(vol.status).toBe('ready');
    expect(
      ownMountTargets()
        .map((m) => m.subnetId)
        .sort(),
    ).toEqual([SUBNET_A, SUBNET_B]);
    expect(ownFileSystems()).toHaveLength(1);
  });

  it('a Create killed after CreateAccessPoint (id never noted): Remove finds it by its client token, keeps the file system', async () => {
    const s = await setup();
    await outsideAccessPoint(s, FS, '/theirs', 'someone-else');
    killAfter(s, 'createAccessPoint');
    await failure(create(s, 'v1', { accessPoint: 'create' }));
    expect(efs.accessPoints).toHaveLength(2);
    expect((await record(s, 'v1'))?.fields).toEqual({
      fileSystemId: FS,
      accessPointToken: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    await s.runtime.manager.remove('efs', 'v1');
    expect(efs.accessPoints.map((a) => a.clientToken)).toEqual(['someone-else']);
    expect(efs.fileSystems.map((f) => f.fileSystemId)).toEqual([FS]);
  });

  it('a Create killed after CreateAccessPoint is finished by the next Create with the same access point', async () => {
    const s = await setup();
    killAfter(s, 'createAccessPoint');
    await failure(create(s, 'v1', { accessPoint: 'create' }));
    const made = efs.accessPoints[0]?.accessPointId;
    const vol = await create(s, 'v1', { accessPoint: 'create' });
    expect(vol).toMatchObject({ status: 'ready', adopted: false, fields: { accessPointId: made } });
    expect(efs.accessPoints).toHaveLength(1);
  });

  it('a Create that made its directory and then failed deletes that directory, never an adopted one', async () => {
    const s = await setup();
    // Everything provisioned, then a failure before the Create is recorded as finished.
    const provision = s.driver.provision.bind(s.driver);
    s.driver.provision = async (v) => {
      await provision(v);
      throw new Error('SIGKILL after the directory was made');
    };
    await expect(create(s, 'v1', {})).rejects.toThrow('SIGKILL after the directory was made');
    expect(await readdir(s.root)).toEqual([]); // the failed Create's abandon removed it

    await mkdir(join(s.root, 'old'));
    await writeFile(join(s.root, 'old', 'precious'), 'data');
    await expect(create(s, 'old', {})).rejects.toThrow('SIGKILL after the directory was made');
    expect(await readdir(join(s.root, 'old'))).toEqual(['precious']);
  });
});

describe('efs provisioned throughput (defect 4)', () => {
  it.each([
    [
      { createFileSystem: 'true', throughputMode: 'provisioned' },
      'driver efs: throughputMode=provisioned needs -o provisionedThroughput=<MiB/s> (EFS requires the amount)',
    ],
    [
      { createFileSystem: 'true', throughputMode: 'elastic', provisionedThroughput: '64' },
      'driver efs: provisionedThroughput only applies with throughputMode=provisioned',
    ],
    [
      { createFileSystem: 'true', provisionedThroughput: '64' },
      'driver efs: provisionedThroughput only applies with throughputMode=provisioned',
    ],
    [
      { provisionedThroughput: '64' },
      'driver efs: provisionedThroughput only apply with createFileSystem=true',
    ],
    [
      { createFileSystem: 'true', throughputMode: 'provisioned', provisionedThroughput: '0.5' },
      'option provisionedThroughput="0.5" for driver efs: must be at least 1 MiB/s (new file system: MiB/s with throughputMode=provisioned (required there, refused otherwise))',
    ],
    [
      { createFileSystem: 'true', throughputMode: 'provisioned', provisionedThroughput: 'lots' },
      'option provisionedThroughput="lots" for driver efs: must be a number of MiB/s such as 128 (new file system: MiB/s with throughputMode=provisioned (required there, refused otherwise))',
    ],
  ])('refuses %j with the exact message, touching nothing', async (opts, message) => {
    const s = await setup();
    const err = await failure(create(s, 'v1', opts));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(message);
    expect(efs.calls).toEqual([]);
  });

  it('creates the file system with ProvisionedThroughputInMibps, records and describes it', async () => {
    const s = await setup();
    const vol = await create(s, 'v1', {
      createFileSystem: 'true',
      throughputMode: 'provisioned',
      provisionedThroughput: '256',
    });
    expect(ownFileSystems()[0]).toMatchObject({
      throughputMode: 'provisioned',
      provisionedThroughputInMibps: 256,
    });
    expect(vol.options).toMatchObject({ throughputMode: 'provisioned', provisionedThroughput: 256 });
    expect(s.driver.describe(vol)).toMatchObject({
      throughputMode: 'provisioned',
      provisionedThroughputMibps: 256,
    });
  });

  it('an amount above what EFS allows comes back as INVALID_ARGUMENT naming it, leaving nothing', async () => {
    const s = await setup();
    const err = await failure(
      create(s, 'v1', {
        createFileSystem: 'true',
        throughputMode: 'provisioned',
        provisionedThroughput: '5000',
      }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(/ProvisionedThroughputInMibps 5000 is above this Region's limit of 3414/);
    expect(ownFileSystems()).toEqual([]);
    expect(await record(s, 'v1')).toBeUndefined();
  });
});

describe('efs accessPoint=create and onRemove (defect 5)', () => {
  it('a volume removed under retain leaves its access point, and the next Create of the name reuses it', async () => {
    const s = await setup();
    const first = await create(s, 'v1', { accessPoint: 'create', uid: '1000', gid: '1000' });
    const apId = first.fields.accessPointId as string;
    expect(s.driver.describe(first).onRemove).toBe(
      `retain: keeps access point ${apId}, directory /v1; the next Create of v1 on ${FS} at /v1 with the same uid/gid reuses the access point`,
    );
    await s.runtime.manager.remove('efs', 'v1');
    expect(efs.accessPoints.map((a) => a.accessPointId)).toEqual([apId]);

    const again = await create(s, 'v1', { accessPoint: 'create', uid: '1000', gid: '1000' });
    expect(again).toMatchObject({
      adopted: true,
      removePolicy: 'retain',
      fields: { accessPointId: apId, createdAccessPoint: true, reusedAccessPoint: true },
    });
    expect(efs.accessPoints).toHaveLength(1);
    expect(calls('CreateAccessPoint')).toHaveLength(1);
  });

  it('a reused access point is deleted by Remove when onRemove=delete is given again', async () => {
    const s = await setup();
    await create(s, 'v1', { accessPoint: 'create' });
    await s.runtime.manager.remove('efs', 'v1');
    const again = await create(s, 'v1', { accessPoint: 'create', onRemove: 'delete' });
    expect(again).toMatchObject({ adopted: true, removePolicy: 'delete' });
    expect(s.driver.describe(again).onRemove).toBe(
      `delete: deletes access point ${again.fields.accessPointId}, then deletes directory /v1 on ${FS} with its contents`,
    );
    await s.runtime.manager.remove('efs', 'v1');
    expect(efs.accessPoints).toEqual([]);
  });

  it('an access point of the name at another path is not reused; one acting as other ids is refused', async () => {
    const s = await setup();
    await create(s, 'v1', { accessPoint: 'create', basePath: '/a' });
    await s.runtime.manager.remove('efs', 'v1');
    await create(s, 'v1', { accessPoint: 'create', basePath: '/b' });
    expect(efs.accessPoints.map((a) => a.rootDirectory.path).sort()).toEqual(['/a/v1', '/b/v1']);
    await s.runtime.manager.remove('efs', 'v1');

    const apB = efs.accessPoints.find((a) => a.rootDirectory.path === '/b/v1')?.accessPointId;
    const err = await failure(create(s, 'v1', { accessPoint: 'create', basePath: '/b', uid: '2000' }));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toBe(
      `access point ${apB} of an earlier volume v1 serves /b/v1 on ${FS} as uid 0 gid 0, not 2000:0; ` +
        `give -o uid= -o gid= to match and reuse it, or delete it first (aws efs delete-access-point --access-point-id ${apB})`,
    );
    expect(efs.accessPoints).toHaveLength(2);
    expect(await record(s, 'v1')).toBeUndefined();
  });

  it('an adopted access point (fsap-…) is kept under delete, and describe says so', async () => {
    const s = await setup();
    const theirs = await s.sdk.createAccessPoint({
      clientToken: 'theirs',
      fileSystemId: FS,
      path: '/apps',
      uid: 0,
      gid: 0,
      permissions: '755',
      tags: {},
    });
    const vol = await create(s, 'v1', { accessPoint: theirs.id, onRemove: 'delete' });
    expect(s.driver.describe(vol).onRemove).toBe(
      `retain: keeps access point ${theirs.id} (not made by stowage), its data`,
    );
    await s.runtime.manager.remove('efs', 'v1');
    expect(efs.accessPoints.map((a) => a.accessPointId)).toEqual([theirs.id]);
  });
});
