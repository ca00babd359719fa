import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { failure } from '../helpers/failure.js';
import {
  addFs,
  type EfsRuntime,
  FS,
  IP_A,
  IP_B,
  IP_C,
  outsideAccessPoint,
  type SetupOptions,
  SG,
  SUBNET_A,
  SUBNET_B,
  SUBNET_C,
  useEfsRuntime,
} from './efs-runtime.js';

/** The efs driver's options, provisioning, mounts and teardown (composition: efs-runtime.ts). */

const AP = 'fsap-0123456789abcdef0';
const ID = 'a'.repeat(64);

useTestAwsCredentials();

const setup = useEfsRuntime();

/** The EFS operations the driver sent, in order. */
const ops = (r: EfsRuntime) => r.efs.calls.map((c) => c.operation);
const requests = (r: EfsRuntime, op: string) => r.efs.calls.filter((c) => c.operation === op);
const mountOf = (r: EfsRuntime, name: string) =>
  r.mounter.callsOf('mount').find((c) => c.path === join(r.config.mountRoot, name))?.detail;
const stagingMounts = (r: EfsRuntime) =>
  r.mounter.callsOf('mount').filter((c) => c.path.startsWith(r.config.stagingDir));

describe('efs options', () => {
  it.each([
    [
      { efs: { fileSystemId: undefined } },
      {},
      'driver efs: no file system: give -o fileSystemId=fs-…, set efs.fileSystemId in the config, or createFileSystem=true',
    ],
    [
      {},
      { fileSystemId: FS, createFileSystem: 'true' },
      'driver efs: give either fileSystemId (use an existing one) or createFileSystem=true, not both',
    ],
    [
      {},
      { performanceMode: 'maxIO', subnets: SUBNET_B },
      'driver efs: performanceMode, subnets only apply with createFileSystem=true',
    ],
    [
      {},
      { createFileSystem: 'true', encrypted: 'false', kmsKeyId: 'alias/mine' },
      'driver efs: kmsKeyId needs encrypted=true',
    ],
    [
      {},
      { accessPoint: AP, subdir: 'x' },
      'driver efs: an existing access point has its own root directory; subdir cannot be set with it',
    ],
    [
      {},
      { mountOptions: 'noac,nfsvers=4.0' },
      'driver efs: EFS speaks NFSv4.1 only; leave nfsvers/vers out of mountOptions',
    ],
    [
      {},
      { mntOptions: 'VERS=4' },
      'driver efs: EFS speaks NFSv4.1 only; leave nfsvers/vers out of mountOptions',
    ],
    [
      {},
      { fsid: 'fs-12' },
      'option fsid="fs-12" for driver efs: must be a file system id such as fs-0123456789abcdef0 (the EFS file system (default efs.fileSystemId))',
    ],
    [
      {},
      { accessPoint: 'fsap-XYZ' },
      'option accessPoint="fsap-XYZ" for driver efs: must be none, create or an fsap-… id (none (subdirectory isolation), create (an access point per volume) or an existing fsap-… id)',
    ],
    [
      {},
      { createFileSystem: 'true', subnets: `${SUBNET_A},subnet-nope` },
      `option subnets="${SUBNET_A},subnet-nope" for driver efs: "subnet-nope" is not a subnet id (new mount targets: subnets (default this host's))`,
    ],
    [
      {},
      { createFileSystem: 'true', securityGroups: 'default' },
      'option securityGroups="default" for driver efs: "default" is not a security group id (new mount targets: security groups)',
    ],
    [
      {},
      { tls: 'maybe' },
      'option tls="maybe" for driver efs: must be true or false (mount with TLS through the EFS mount helper)',
    ],
  ] as [SetupOptions, Record<string, string>, string][])(
    'refuses %j %j with the exact message, touching nothing',
    async (s, opts, message) => {
      const r = await setup(s);
      addFs(r, [SUBNET_A]);
      const err = await failure(r.runtime.manager.create('efs', 'bad', opts));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toBe(message);
      expect(await r.store.getVolume('bad')).toBeUndefined();
      expect(r.efs.calls).toEqual([]);
      expect(r.mounter.callsOf('mount')).toEqual([]);
    },
  );

  it('accepts the aliases fsid, mntOptions and tls under their canonical names', async () => {
    const r = await setup();
    const parsed = r.runtime.registry.get('efs').parseOptions({
      fsid: 'fs-00000000000000abc',
      mntOptions: 'noac, actimeo=1',
      tls: 'yes',
    });
    expect(parsed.values).toEqual({
      fileSystemId: 'fs-00000000000000abc',
      basePath: '/',
      accessPoint: 'none',
      directoryPerms: '0755',
      mountOptions: ['noac', 'actimeo=1'],
      encryptInTransit: true,
      onRemove: 'retain',
      createFileSystem: false,
      mountTimeout: '30s',
    });
    expect(parsed.given.sort()).toEqual(['encryptInTransit', 'fileSystemId', 'mountOptions']);
  });

  it('takes its defaults from the efs section of the daemon config', async () => {
    const r = await setup({
      efs: { mountOptions: ['hard', 'timeo=50'], onRemove: 'delete', mountTimeout: '7s' },
    });
    addFs(r, [SUBNET_A]);
    const vol = await r.runtime.manager.create('efs', 'v1', { mountOptions: 'noac' });
    expect(vol.options).toMatchObject({ fileSystemId: FS, onRemove: 'delete', mountTimeout: '7s' });
    expect(vol.removePolicy).toBe('delete');
    await r.runtime.manager.mount('efs', 'v1', ID);
    expect(mountOf(r, 'v1')).toMatchObject({ options: ['hard', 'timeo=50', 'noac'], timeoutMs: 7000 });
  });

  it('takes the file system from the config, and drops it when the volume creates its own', async () => {
    const r = await setup();
    const driver = r.runtime.registry.get('efs');
    expect(driver.parseOptions({}).values).toMatchObject({ fileSystemId: FS });
    const own = driver.parseOptions({ createFileSystem: 'true' }).values;
    expect(own.createFileSystem).toBe(true);
    expect(own).not.toHaveProperty('fileSystemId');
  });
});

describe('efs mount targets', () => {
  it("provisions through the mount target in this host's zone among several", async () => {
    const r = await setup();
    addFs(r, [SUBNET_B, SUBNET_A, SUBNET_C]);
    for (const ip of [IP_B, IP_C]) r.mounter.nfsServers.set(ip, join(r.dir, 'wrong-zone'));
    const vol = await r.runtime.manager.create('efs', 'v1', {});
    expect(vol.fields).toEqual({
      basePath: '/',
      fileSystemId: FS,
      subdir: 'v1',
      remotePath: '/v1',
      mountTargets: { 'us-east-1a': IP_A },
    });
    expect(stagingMounts(r).map((c) => (c.detail as { source: string }).source)).toEqual([`${IP_A}:/`]);
    expect((await stat(join(r.root, 'v1'))).isDirectory()).toBe(true);
  });

  it("refuses a file system without a mount target in this host's zone, naming the zones it has", async () => {
    const r = await setup();
    addFs(r, [SUBNET_B, SUBNET_C]);
    const err = await failure(r.runtime.manager.create('efs', 'v1', {}));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(
      `EFS file system ${FS} has no available mount target in us-east-1a (it has: us-east-1b, us-east-1c); ` +
        'create one in a subnet of us-east-1a (aws efs create-mount-target), or give -o mountTargetIp=',
    );
    expect(await r.store.getVolume('v1')).toBeUndefined();
    expect(r.mounter.callsOf('mount')).toEqual([]);
  });

  it('says "none" when the file system has no mount target at all', async () => {
    const r = await setup();
    addFs(r);
    const err = await failure(r.runtime.manager.create('efs', 'v1', {}));
    expect(err.message).toMatch(/has no available mount target in us-east-1a \(it has: none\)/);
  });

  it('mounts through mountTargetIp without asking EFS for mount targets', async () => {
    const r = await setup();
    addFs(r); // no mount target at all: the override is the only way in
    r.mounter.nfsServers.set('10.9.9.9', r.root);
    await r.runtime.manager.create('efs', 'v1', { mountTargetIp: '10.9.9.9' });
    await r.runtime.manager.mount('efs', 'v1', ID);
    expect(mountOf(r, 'v1')).toMatchObject({ source: '10.9.9.9:/v1', fsType: 'nfs4' });
    expect(ops(r)).not.toContain('describeMountTargets');
  });

  it('records the address found at Create and mounts and removes through it without looking again', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    await r.runtime.manager.create('efs', 'v1', { onRemove: 'delete' });
    r.efs.calls.length = 0;
    await r.runtime.manager.mount('efs', 'v1', ID);
    await r.runtime.manager.unmount('efs', 'v1', ID);
    await r.runtime.manager.remove('efs', 'v1');
    expect(r.efs.calls).toEqual([]);
    expect(await readdir(r.root)).toEqual([]);
  });

  it('refuses a file system EFS does not know, and passes EFS errors through, recording nothing', async () => {
    const r = await setup();
    const gone = await failure(r.runtime.manager.create('efs', 'v1', {}));
    expect(gone.code).toBe('NOT_FOUND');
    expect(gone.message).toBe(`EFS file system ${FS} does not exist in this region`);
    addFs(r, [SUBNET_A]);
    r.efs.failNext('DescribeMountTargets', { code: 'ThrottlingException', message: 'Rate exceeded' });
    const err = await failure(r.runtime.manager.create('efs', 'v1', {}));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(
      `DescribeMountTargets ${FS} failed: ThrottlingException: Rate exceeded (AWS did not serve the request; it was retried and can be tried again later)`,
    );
    expect(await r.store.getVolume('v1')).toBeUndefined();
    expect(await readdir(r.root)).toEqual([]);
  });
});

describe('efs provisioning', () => {
  it('makes <basePath>/<subdir> with directoryPerms through a staging mount of basePath', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    await mkdir(join(r.root, 'shared'));
    const vol = await r.runtime.manager.create('efs', 'v1', {
      basePath: '/shared/',
      subdir: 'team/{name}-data',
      directoryPerms: '0750',
    });
    const s = await stat(join(r.root, 'shared', 'team', 'v1-data'));
    expect(s.isDirectory()).toBe(true);
    expect(s.mode & 0o7777).toBe(0o750);
    expect(vol.fields).toMatchObject({
      basePath: '/shared',
      subdir: 'team/v1-data',
      remotePath: '/shared/team/v1-data',
    });
    expect(vol.adopted).toBe(false);
    expect(stagingMounts(r)[0]?.detail).toMatchObject({ source: `${IP_A}:/shared`, fsType: 'nfs4' });
    expect(r.mounter.table.size).toBe(0);
    expect(await readdir(r.config.stagingDir)).toEqual([]);
  });

  it('adopts an existing directory and keeps it on Remove unless onRemove=delete was given', async () => {
    const r = await setup({ efs: { onRemove: 'delete' } }); // the daemon default would delete ...
    addFs(r, [SUBNET_A]);
    await mkdir(join(r.root, 'old'));
    await writeFile(join(r.root, 'old', 'precious'), 'data');
    const vol = await r.runtime.manager.create('efs', 'old', {});
    expect(vol.adopted).toBe(true);
    expect(vol.removePolicy).toBe('retain'); // ... but adopted data is kept
    expect(r.runtime.registry.get('efs').describe(vol).onRemove).toBe('retain: keeps directory /old');
    await r.runtime.manager.remove('efs', 'old');
    expect(await readdir(join(r.root, 'old'))).toEqual(['precious']);

    const again = await r.runtime.manager.create('efs', 'old', { onRemove: 'delete' });
    expect(again).toMatchObject({ adopted: true, removePolicy: 'delete' });
    expect(r.runtime.registry.get('efs').describe(again).onRemove).toBe(
      `delete: deletes directory /old on ${FS} with its contents`,
    );
    await r.runtime.manager.remove('efs', 'old');
    expect(await readdir(r.root)).toEqual([]);
  });
});

describe('efs mounts', () => {
  it('mounts <ip>:<basePath>/<subdir> as nfs4 with the AWS defaults and the volume options merged over them', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    await r.runtime.manager.create('efs', 'v1', { mountOptions: 'timeo=100,noac', mountTimeout: '5s' });
    const target = await r.runtime.manager.mount('efs', 'v1', ID);
    expect(target).toBe(join(r.config.mountRoot, 'v1'));
    expect(mountOf(r, 'v1')).toEqual({
      source: `${IP_A}:/v1`,
      fsType: 'nfs4',
      options: [
        'nfsvers=4.1',
        'rsize=1048576',
        'wsize=1048576',
        'hard',
        'timeo=100',
        'retrans=2',
        'noresvport',
        'noac',
      ],
      timeoutMs: 5000,
    });
    await writeFile(join(r.root, 'v1', 'f'), 'x'); // what a container writes lands on the file system
    await r.runtime.manager.unmount('efs', 'v1', ID);
    expect(r.mounter.table.size).toBe(0);
  });

  it('refuses a TLS mount without the EFS mount helper, saying what to install', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    await r.runtime.manager.create('efs', 'v1', { encryptInTransit: 'true' });
    const err = await failure(r.runtime.manager.mount('efs', 'v1', ID));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(
      'volume v1 needs the EFS mount helper (mount -t efs) for TLS, which is not installed: install amazon-efs-utils on this host',
    );
    expect(r.mounter.callsOf('hasTool').map((c) => c.path)).toContain('mount.efs');
    expect(mountOf(r, 'v1')).toBeUndefined();
    expect(await r.store.getMounts('v1')).toEqual([]);
  });

  it('mounts with TLS through mount.efs: fs-…:/path, tls and the mount target address', async () => {
    const r = await setup();
    addFs(r, [SUBNET_B, SUBNET_A]);
    r.mounter.tools.add('mount.efs');
    await r.runtime.manager.create('efs', 'v1', { tls: 'true' });
    await r.runtime.manager.mount('efs', 'v1', ID);
    expect(mountOf(r, 'v1')).toEqual({
      source: `${FS}:/v1`,
      fsType: 'efs',
      options: ['tls', `mounttargetip=${IP_A}`],
      timeoutMs: 30_000,
    });
  });

  it('adopts an existing access point (kept on Remove) and mounts it as fs-…:/ with accesspoint=', async () => {
    const r = await setup({ efs: { onRemove: 'delete' } });
    addFs(r, [SUBNET_A]);
    const { id: AP } = await outsideAccessPoint(r, FS, '/apps/one');
    const vol = await r.runtime.manager.create('efs', 'v1', { accessPoint: AP });
    expect(vol).toMatchObject({ adopted: true, removePolicy: 'retain' });
    expect(vol.fields).toMatchObject({ fileSystemId: FS, accessPointId: AP, remotePath: '/apps/one' });
    expect(r.mounter.callsOf('mount')).toEqual([]); // nothing made on the file system

    const err = await failure(r.runtime.manager.mount('efs', 'v1', ID));
    expect(err.message).toBe(
      'volume v1 needs the EFS mount helper (mount -t efs) for its access point, which is not installed: install amazon-efs-utils on this host',
    );
    r.mounter.tools.add('mount.efs');
    await r.runtime.manager.mount('efs', 'v1', ID);
    expect(mountOf(r, 'v1')).toMatchObject({
      source: `${FS}:/`,
      fsType: 'efs',
      options: ['tls', `mounttargetip=${IP_A}`, `accesspoint=${AP}`],
    });
    await r.runtime.manager.unmount('efs', 'v1', ID);
    await r.runtime.manager.remove('efs', 'v1');
    expect(r.efs.accessPoints.map((a) => a.accessPointId)).toEqual([AP]);
  });

  it('refuses an access point of another file system', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    r.efs.addFileSystem({ fileSystemId: 'fs-0999999999999999f' });
    const { id: AP } = await outsideAccessPoint(r, 'fs-0999999999999999f', '/');
    const err = await failure(r.runtime.manager.create('efs', 'v1', { accessPoint: AP }));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(`access point ${AP} does not exist on ${FS}`);
    expect(await r.store.getVolume('v1')).toBeUndefined();
  });
});

describe('efs access points per volume', () => {
  it('creates an access point with the path, owner and permissions, and deletes it before the directory', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    r.mounter.tools.add('mount.efs');
    const vol = await r.runtime.manager.create('efs', 'v1', {
      accessPoint: 'create',
      basePath: '/apps',
      uid: '1000',
      gid: '1001',
      directoryPerms: '0750',
      onRemove: 'delete',
    });
    const [ap] = r.efs.accessPoints;
    expect(ap).toMatchObject({
      clientToken: expect.stringMatching(/^[0-9a-f]{64}$/),
      fileSystemId: FS,
      posixUser: { uid: 1000, gid: 1001 },
      rootDirectory: {
        path: '/apps/v1',
        creationInfo: { ownerUid: 1000, ownerGid: 1001, permissions: '750' },
      },
      tags: { Name: 'v1', 'stowage.io/volume': 'v1' },
    });
    expect(vol.fields).toMatchObject({
      accessPointId: ap?.accessPointId,
      createdAccessPoint: true,
      remotePath: '/apps/v1',
    });
    expect(vol.removePolicy).toBe('delete');
    expect(r.mounter.callsOf('mount')).toEqual([]); // EFS makes the directory at the first mount

    await r.runtime.manager.mount('efs', 'v1', ID);
    expect(mountOf(r, 'v1')).toMatchObject({
      source: `${FS}:/`,
      options: ['tls', `mounttargetip=${IP_A}`, `accesspoint=${ap?.accessPointId}`],
    });
    await mkdir(join(r.root, 'apps', 'v1'), { recursive: true }); // as EFS did through the access point
    await writeFile(join(r.root, 'apps', 'v1', 'data'), 'x');
    await r.runtime.manager.unmount('efs', 'v1', ID);

    let dirAtApDeletion: string[] | undefined;
    const deleteAp = r.sdk.deleteAccessPoint.bind(r.sdk);
    r.sdk.deleteAccessPoint = async (id) => {
      dirAtApDeletion = await readdir(join(r.root, 'apps', 'v1'));
      return deleteAp(id);
    };
    await r.runtime.manager.remove('efs', 'v1');
    expect(dirAtApDeletion).toEqual(['data']); // the access point went first ...
    expect(await readdir(join(r.root, 'apps'))).toEqual([]); // ... then the directory
    expect(r.efs.accessPoints).toEqual([]);
  });

  it('keeps access point and directory under retain, and treats both already gone as removed', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    await r.runtime.manager.create('efs', 'kept', { accessPoint: 'create' });
    await r.runtime.manager.remove('efs', 'kept');
    expect(r.efs.accessPoints).toHaveLength(1);
    expect(ops(r)).not.toContain('DeleteAccessPoint');

    const gone = await r.runtime.manager.create('efs', 'gone', { accessPoint: 'create', onRemove: 'delete' });
    await r.sdk.deleteAccessPoint(String(gone.fields.accessPointId)); // outside stowage; its directory never made
    await r.runtime.manager.remove('efs', 'gone');
    expect(await r.store.getVolume('gone')).toBeUndefined();
  });
});

describe('efs file systems per volume', () => {
  it('creates the file system and mount targets, then tears them down in order under delete', async () => {
    const r = await setup();
    r.efs.stateDelayMs = 150; // file system and mount targets are `creating`, then `deleting`, for a while
    const vol = await r.runtime.manager.create('efs', 'v1', {
      createFileSystem: 'true',
      performanceMode: 'maxIO',
      throughputMode: 'provisioned',
      provisionedThroughput: '128',
      kmsKeyId: 'alias/stowage',
      subnets: `${SUBNET_A},${SUBNET_B}`,
      securityGroups: SG,
      accessPoint: 'create',
      onRemove: 'delete',
    });
    expect(requests(r, 'CreateFileSystem').map((c) => c.body)).toEqual([
      {
        CreationToken: expect.stringMatching(/^[0-9a-f]{64}$/),
        PerformanceMode: 'maxIO',
        ThroughputMode: 'provisioned',
        ProvisionedThroughputInMibps: 128,
        Encrypted: true, // implied by the key
        KmsKeyId: 'alias/stowage',
        Tags: [
          { Key: 'Name', Value: 'v1' },
          { Key: 'stowage.io/volume', Value: 'v1' },
        ],
      },
    ]);
    const [fs] = r.efs.fileSystems;
    expect(fs?.state).toBe('available');
    expect(r.efs.mountTargets.map((m) => [m.subnetId, m.securityGroups, m.state])).toEqual([
      [SUBNET_A, [SG], 'available'],
      [SUBNET_B, [SG], 'available'],
    ]);
    expect(vol.fields).toMatchObject({
      fileSystemId: fs?.fileSystemId,
      createdFileSystem: true,
      accessPointId: expect.any(String),
    });
    // Waited for the file system before making mount targets, and for them before finishing.
    const created = ops(r);
    expect(created.indexOf('CreateMountTarget')).toBeGreaterThan(created.lastIndexOf('DescribeFileSystems'));
    expect(created.filter((o) => o === 'DescribeFileSystems').length).toBeGreaterThan(1);
    expect(created.lastIndexOf('DescribeMountTargets')).toBeGreaterThan(
      created.lastIndexOf('CreateMountTarget'),
    );

    r.efs.calls.length = 0;
    await r.runtime.manager.remove('efs', 'v1');
    expect(ops(r).filter((o) => o.startsWith('Delete'))).toEqual([
      'DeleteAccessPoint',
      'DeleteMountTarget',
      'DeleteMountTarget',
      'DeleteFileSystem',
    ]);
    // The file system went only once its mount targets were gone (EFS refuses it before).
    expect(requests(r, 'DeleteFileSystem').map((c) => c.error)).toEqual([undefined]);
    expect(r.efs.fileSystems.map((f) => f.state)).toEqual(['deleting']);
    expect(r.efs.mountTargets).toEqual([]);
    expect(r.efs.accessPoints.filter((a) => a.state !== 'deleting')).toEqual([]);
  });

  it("puts the mount target in this host's subnet by default and keeps everything under retain", async () => {
    const r = await setup();
    const vol = await r.runtime.manager.create('efs', 'v1', { createFileSystem: 'true' });
    const [fs] = r.efs.fileSystems;
    expect(requests(r, 'CreateFileSystem')[0]?.body).not.toHaveProperty('Encrypted');
    // Only what the user names: no security group sent, so EFS takes the VPC's default.
    expect(requests(r, 'CreateMountTarget').map((c) => c.body)).toEqual([
      { FileSystemId: fs?.fileSystemId, SubnetId: SUBNET_A },
    ]);
    expect(vol.fields).toMatchObject({ mountTargets: { 'us-east-1a': IP_A }, remotePath: '/v1' });
    expect((await stat(join(r.root, 'v1'))).isDirectory()).toBe(true);
    expect(vol.removePolicy).toBe('retain');

    await r.runtime.manager.remove('efs', 'v1');
    expect(ops(r).filter((o) => o.startsWith('Delete'))).toEqual([]);
    expect(r.efs.fileSystems).toHaveLength(1);
    expect(r.efs.mountTargets).toHaveLength(1);
    expect(await readdir(r.root)).toEqual(['v1']);
  });

  it('describe says what Remove does to the file system, its mount targets and access point', async () => {
    const r = await setup();
    const driver = r.runtime.registry.get('efs');
    const kept = await r.runtime.manager.create('efs', 'kept', {
      createFileSystem: 'true',
      accessPoint: 'create',
    });
    const gone = await r.runtime.manager.create('efs', 'gone', {
      createFileSystem: 'true',
      accessPoint: 'create',
      onRemove: 'delete',
    });
    const [k, g] = [kept, gone].map((v) => [v.fields.accessPointId, v.fields.fileSystemId]);
    expect(driver.describe(kept)).toMatchObject({
      throughputMode: 'bursting',
      onRemove: `retain: keeps access point ${k?.[0]}, directory /kept, file system ${k?.[1]} and its mount targets (still billed)`,
    });
    expect(driver.describe(gone).onRemove).toBe(
      `delete: deletes access point ${g?.[0]}, then deletes the mount targets and file system ${g?.[1]} with all its data`,
    );
  });

  it("refuses when no subnets are given and this host's subnet is unknown", async () => {
    const r = await setup({ identity: { subnetId: undefined } });
    const err = await failure(r.runtime.manager.create('efs', 'v1', { createFileSystem: 'true' }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe("driver efs: this host's subnet is unknown; give -o subnets=subnet-…");
    expect(await r.store.getVolume('v1')).toBeUndefined();
    expect(ops(r)).toEqual([]);
  });
});

describe('efs regressions', () => {
  it('createFileSystem=false with efs.fileSystemId in the config uses the config file system', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    const vol = await r.runtime.manager.create('efs', 'v1', { createFileSystem: 'false' });
    expect(vol.fields.fileSystemId).toBe(FS);
  });

  it('a refused file-system creation (subnet unknown) creates nothing', async () => {
    const r = await setup({ identity: { subnetId: undefined } });
    await failure(r.runtime.manager.create('efs', 'v1', { createFileSystem: 'true' }));
    expect(r.efs.fileSystems).toEqual([]);
  });

  it("a file system without a mount target in this host's zone is refused before it is created", async () => {
    const r = await setup();
    await failure(r.runtime.manager.create('efs', 'v1', { createFileSystem: 'true', subnets: SUBNET_B }));
    expect(requests(r, 'CreateFileSystem')).toEqual([]);
    expect(r.efs.fileSystems).toEqual([]);
    expect(r.efs.mountTargets).toEqual([]);
  });

  it('directoryPerms=01777 gives the access point permissions EFS accepts', async () => {
    const r = await setup();
    addFs(r, [SUBNET_A]);
    await r.runtime.manager.create('efs', 'v1', { accessPoint: 'create', directoryPerms: '01777' });
    expect(r.efs.accessPoints[0]?.rootDirectory.creationInfo?.permissions).toBe('1777');
  });
});
