import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Ec2Api } from '../../src/cloud/ec2.js';
import type {
  CreateAccessPointInput,
  CreateFileSystemInput,
  EfsAccessPoint,
  EfsApi,
  EfsFileSystem,
  EfsMountTarget,
} from '../../src/cloud/efs.js';
import { type InstanceIdentity, StaticIdentity } from '../../src/cloud/imds.js';
import { type Config, loadConfig } from '../../src/config.js';
import { StowageError } from '../../src/core/errors.js';
import type { MountOptions } from '../../src/mount/mounter.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import { FakeFileOps } from '../fakes/fake-file-ops.js';
import { FakeLoopDevices } from '../fakes/fake-loop.js';
import { FakeMounter } from '../fakes/fake-mounter.js';
import { failure } from '../helpers/failure.js';

/**
 * The efs driver through the real VolumeManager over the fake kernel and an in-memory EFS: the
 * mount target's address is a fake NFS server (FakeMounter.nfsServers) whose root is a local
 * directory standing in for the EFS file system root.
 */

const FS = 'fs-0123456789abcdef0';
const AP = 'fsap-0123456789abcdef0';
const SUBNET_A = 'subnet-0aaaaaaaaaaaaaaa1';
const SUBNET_B = 'subnet-0bbbbbbbbbbbbbbb2';
const SUBNET_C = 'subnet-0ccccccccccccccc3';
const IP_A = '10.1.0.5';
const IP_B = '10.1.1.5';
const IP_C = '10.1.2.5';
const ID = 'a'.repeat(64);
const AWS = { instanceId: 'i-0123456789abcdef0', availabilityZone: 'us-east-1a', region: 'us-east-1' };

// --- an in-memory EFS ------------------------------------------------------------------------

interface MemMountTarget extends EfsMountTarget {
  securityGroups: string[];
  /** Describes left before a deleted target is gone. */
  goneAfter?: number;
}

/**
 * A stateful EfsApi: file systems, mount targets (one per zone, the address of their subnet),
 * access points. New resources are `creating` for `settleAfter` describes, then `available`;
 * deleted mount targets are `deleting` for one describe, then gone. Every call is logged.
 */
class MemEfs implements EfsApi {
  readonly calls: string[] = [];
  readonly fileSystems = new Map<string, EfsFileSystem & { input?: CreateFileSystemInput; polls: number }>();
  readonly mountTargets = new Map<string, MemMountTarget & { polls: number }>();
  readonly accessPoints = new Map<string, EfsAccessPoint & { input?: CreateAccessPointInput }>();
  /** subnet -> zone and the address a mount target there gets. */
  readonly subnets = new Map<string, { az: string; ip: string }>([
    [SUBNET_A, { az: 'us-east-1a', ip: IP_A }],
    [SUBNET_B, { az: 'us-east-1b', ip: IP_B }],
    [SUBNET_C, { az: 'us-east-1c', ip: IP_C }],
  ]);
  /** Describes a new resource stays `creating`. */
  settleAfter = 1;
  private readonly failures = new Map<string, Error[]>();
  private seq = 0;

  failNext(op: keyof EfsApi, err: Error): void {
    this.failures.set(op, [...(this.failures.get(op) ?? []), err]);
  }

  addFileSystem(id: string, targets: string[] = []): void {
    this.fileSystems.set(id, { id, state: 'available', polls: 0 });
    for (const subnet of targets) this.addTarget(id, subnet, [], 'available');
  }

  ops(): string[] {
    return this.calls.map((c) => c.split(' ')[0]!);
  }

  private take(op: string, arg: string): void {
    this.calls.push(`${op} ${arg}`);
    const err = this.failures.get(op)?.shift();
    if (err) throw err;
  }

  private nextId(prefix: string): string {
    return `${prefix}-${(++this.seq).toString(16).padStart(17, '0')}`;
  }

  private addTarget(fsId: string, subnet: string, groups: string[], state: string): MemMountTarget {
    const s = this.subnets.get(subnet);
    if (!s) throw new StowageError('INVALID_ARGUMENT', `SubnetNotFound: ${subnet}`);
    const mt = {
      id: this.nextId('fsmt'),
      fileSystemId: fsId,
      subnetId: subnet,
      availabilityZone: s.az,
      ip: s.ip,
      state,
      securityGroups: groups,
      polls: 0,
    };
    this.mountTargets.set(mt.id, mt);
    return mt;
  }

  async describeFileSystem(id: string) {
    this.take('describeFileSystem', id);
    const fs = this.fileSystems.get(id);
    if (!fs) return undefined;
    if (fs.state === 'creating' && ++fs.polls > this.settleAfter) fs.state = 'available';
    return { id: fs.id, state: fs.state };
  }

  async findFileSystemByCreationToken(token: string) {
    this.take('findFileSystemByCreationToken', token);
    const fs = [...this.fileSystems.values()].find((f) => f.input?.creationToken === token);
    return fs ? { id: fs.id, state: fs.state } : undefined;
  }

  async createFileSystem(input: CreateFileSystemInput) {
    this.take('createFileSystem', input.creationToken);
    const same = [...this.fileSystems.values()].find((f) => f.input?.creationToken === input.creationToken);
    if (same) return { id: same.id, state: same.state };
    const fs = { id: this.nextId('fs'), state: 'creating', input, polls: 0 };
    this.fileSystems.set(fs.id, fs);
    return { id: fs.id, state: fs.state };
  }

  async deleteFileSystem(id: string) {
    this.take('deleteFileSystem', id);
    if ([...this.mountTargets.values()].some((m) => m.fileSystemId === id))
      throw new StowageError('IN_USE', `FileSystemInUse: ${id} has mount targets`);
    this.fileSystems.delete(id);
  }

  async describeMountTargets(fileSystemId: string) {
    this.take('describeMountTargets', fileSystemId);
    const out: EfsMountTarget[] = [];
    for (const mt of [...this.mountTargets.values()].filter((m) => m.fileSystemId === fileSystemId)) {
      if (mt.state === 'deleting' && mt.goneAfter !== undefined && mt.goneAfter-- <= 0) {
        this.mountTargets.delete(mt.id);
        continue;
      }
      if (mt.state === 'creating' && ++mt.polls > this.settleAfter) mt.state = 'available';
      const { securityGroups: _g, goneAfter: _d, polls: _p, ...plain } = mt;
      out.push(plain);
    }
    return out;
  }

  async createMountTarget(fileSystemId: string, subnetId: string, securityGroups: string[]) {
    this.take('createMountTarget', `${fileSystemId} ${subnetId}`);
    const { securityGroups: _g, ...plain } = this.addTarget(
      fileSystemId,
      subnetId,
      securityGroups,
      'creating',
    );
    return plain;
  }

  async deleteMountTarget(id: string) {
    this.take('deleteMountTarget', id);
    const mt = this.mountTargets.get(id);
    if (mt) Object.assign(mt, { state: 'deleting', goneAfter: 1 });
  }

  async createAccessPoint(input: CreateAccessPointInput) {
    this.take('createAccessPoint', input.fileSystemId);
    const ap = {
      id: this.nextId('fsap'),
      fileSystemId: input.fileSystemId,
      path: input.path,
      state: 'available',
      input,
    };
    this.accessPoints.set(ap.id, ap);
    return { id: ap.id, fileSystemId: ap.fileSystemId, path: ap.path, state: ap.state };
  }

  async describeAccessPoint(id: string) {
    this.take('describeAccessPoint', id);
    const ap = this.accessPoints.get(id);
    return ap ? { id: ap.id, fileSystemId: ap.fileSystemId, path: ap.path, state: ap.state } : undefined;
  }

  async listAccessPoints(fileSystemId: string) {
    this.take('listAccessPoints', fileSystemId);
    return [...this.accessPoints.values()]
      .filter((a) => a.fileSystemId === fileSystemId)
      .map(({ input, ...ap }) => ({
        ...ap,
        ...(input
          ? { clientToken: input.clientToken, uid: input.uid, gid: input.gid, tags: input.tags }
          : {}),
      }));
  }

  async deleteAccessPoint(id: string) {
    this.take('deleteAccessPoint', id);
    this.accessPoints.delete(id);
  }
}

/**
 * The fake kernel, also able to run `mount -t efs` (the EFS mount helper): it mounts the file
 * system through the address in mounttargetip=, as the helper does.
 */
class EfsAwareMounter extends FakeMounter {
  override async mount(source: string, target: string, opts: MountOptions = {}): Promise<void> {
    if (opts.fsType !== 'efs') return super.mount(source, target, opts);
    this.calls.push({ op: 'mount', path: target, detail: { source, ...opts } });
    const ip = (opts.options ?? [])
      .find((o) => o.startsWith('mounttargetip='))
      ?.slice('mounttargetip='.length);
    if (!ip || !this.nfsServers.has(ip)) throw new Error(`fake mount.efs: no mount target at ${ip}`);
    this.table.set(target, { source, fsType: 'efs', options: [...(opts.options ?? [])] });
  }
}

// --- the runtime -----------------------------------------------------------------------------

interface EfsRuntime {
  dir: string;
  config: Config;
  runtime: Runtime;
  store: SqliteStore;
  mounter: EfsAwareMounter;
  efs: MemEfs;
  /** The EFS file system root as the fake NFS server at IP_A serves it. */
  root: string;
  cleanup(): Promise<void>;
}

const ec2Stub = new Proxy({} as Ec2Api, {
  get: (_t, prop) => () => {
    throw new Error(`the efs driver must not call EC2 (${String(prop)})`);
  },
});

interface SetupOptions {
  efs?: Record<string, unknown>;
  identity?: Partial<InstanceIdentity>;
}

/**
 * createTestRuntime's composition (real config, store, locks, manager; fake kernel), plus the
 * cloud seams, which createTestRuntime cannot take.
 */
async function setupEfs(o: SetupOptions = {}): Promise<EfsRuntime> {
  const dir = await mkdtemp(join(tmpdir(), 'stowage-efs-'));
  const file = join(dir, 'config.yaml');
  await writeFile(file, '');
  const config = loadConfig({
    file,
    env: {},
    flags: {
      dataDir: join(dir, 'data'),
      hostId: 'test-host',
      socketDir: join(dir, 'plugins'),
      drivers: ['efs'],
      aws: AWS,
      efs: { fileSystemId: FS, ...o.efs },
    },
  });
  const mounter = new EfsAwareMounter();
  const loop = new FakeLoopDevices(mounter);
  const files = new FakeFileOps(mounter);
  const store = new SqliteStore(config.state);
  const efs = new MemEfs();
  const root = join(dir, 'efs-root');
  await mkdir(root, { recursive: true });
  mounter.nfsServers.set(IP_A, root);
  const runtime = createRuntime(config, {
    mounter,
    loop,
    files,
    probeTcp: async (host) => ({ ok: mounter.nfsServers.has(host), detail: 'fake probe' }),
    store,
    log: pino({ level: 'silent' }),
    cloud: {
      ec2: ec2Stub,
      efs,
      identity: new StaticIdentity({ ...AWS, subnetId: SUBNET_A, ...o.identity }),
    },
  });
  return {
    dir,
    config,
    runtime,
    store,
    mounter,
    efs,
    root,
    cleanup: async () => {
      await runtime.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

let t: EfsRuntime | undefined;
async function setup(o: SetupOptions = {}): Promise<EfsRuntime> {
  await t?.cleanup();
  t = await setupEfs(o);
  return t;
}
afterEach(async () => {
  await t?.cleanup();
  t = undefined;
});

const ops = (r: EfsRuntime) => r.efs.ops();
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
      r.efs.addFileSystem(FS, [SUBNET_A]);
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
    r.efs.addFileSystem(FS, [SUBNET_A]);
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
    r.efs.addFileSystem(FS, [SUBNET_B, SUBNET_A, SUBNET_C]);
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
    r.efs.addFileSystem(FS, [SUBNET_B, SUBNET_C]);
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
    r.efs.addFileSystem(FS);
    const err = await failure(r.runtime.manager.create('efs', 'v1', {}));
    expect(err.message).toMatch(/has no available mount target in us-east-1a \(it has: none\)/);
  });

  it('mounts through mountTargetIp without asking EFS for mount targets', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS); // no mount target at all: the override is the only way in
    r.mounter.nfsServers.set('10.9.9.9', r.root);
    await r.runtime.manager.create('efs', 'v1', { mountTargetIp: '10.9.9.9' });
    await r.runtime.manager.mount('efs', 'v1', ID);
    expect(mountOf(r, 'v1')).toMatchObject({ source: '10.9.9.9:/v1', fsType: 'nfs4' });
    expect(ops(r)).not.toContain('describeMountTargets');
  });

  it('records the address found at Create and mounts and removes through it without looking again', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS, [SUBNET_A]);
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
    r.efs.addFileSystem(FS, [SUBNET_A]);
    r.efs.failNext(
      'describeMountTargets',
      new StowageError('UNAVAILABLE', 'DescribeMountTargets failed: throttled'),
    );
    const err = await failure(r.runtime.manager.create('efs', 'v1', {}));
    expect(err.message).toBe('DescribeMountTargets failed: throttled');
    expect(await r.store.getVolume('v1')).toBeUndefined();
    expect(await readdir(r.root)).toEqual([]);
  });
});

describe('efs provisioning', () => {
  it('makes <basePath>/<subdir> with directoryPerms through a staging mount of basePath', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS, [SUBNET_A]);
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
    r.efs.addFileSystem(FS, [SUBNET_A]);
    await mkdir(join(r.root, 'old'));
    await writeFile(join(r.root, 'old', 'precious'), 'data');
    const vol = await r.runtime.manager.create('efs', 'old', {});
    expect(vol.adopted).toBe(true);
    expect(vol.removePolicy).toBe('retain'); // ... but adopted data is kept
    await r.runtime.manager.remove('efs', 'old');
    expect(await readdir(join(r.root, 'old'))).toEqual(['precious']);

    const again = await r.runtime.manager.create('efs', 'old', { onRemove: 'delete' });
    expect(again).toMatchObject({ adopted: true, removePolicy: 'delete' });
    await r.runtime.manager.remove('efs', 'old');
    expect(await readdir(r.root)).toEqual([]);
  });
});

describe('efs mounts', () => {
  it('mounts <ip>:<basePath>/<subdir> as nfs4 with the AWS defaults and the volume options merged over them', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS, [SUBNET_A]);
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
    r.efs.addFileSystem(FS, [SUBNET_A]);
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
    r.efs.addFileSystem(FS, [SUBNET_B, SUBNET_A]);
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
    r.efs.addFileSystem(FS, [SUBNET_A]);
    r.efs.accessPoints.set(AP, { id: AP, fileSystemId: FS, path: '/apps/one', state: 'available' });
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
    expect(r.efs.accessPoints.has(AP)).toBe(true);
  });

  it('refuses an access point of another file system', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS, [SUBNET_A]);
    r.efs.accessPoints.set(AP, {
      id: AP,
      fileSystemId: 'fs-0999999999999999f',
      path: '/',
      state: 'available',
    });
    const err = await failure(r.runtime.manager.create('efs', 'v1', { accessPoint: AP }));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(`access point ${AP} does not exist on ${FS}`);
    expect(await r.store.getVolume('v1')).toBeUndefined();
  });
});

describe('efs access points per volume', () => {
  it('creates an access point with the path, owner and permissions, and deletes it before the directory', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS, [SUBNET_A]);
    r.mounter.tools.add('mount.efs');
    const vol = await r.runtime.manager.create('efs', 'v1', {
      accessPoint: 'create',
      basePath: '/apps',
      uid: '1000',
      gid: '1001',
      directoryPerms: '0750',
      onRemove: 'delete',
    });
    const [ap] = [...r.efs.accessPoints.values()];
    expect(ap?.input).toEqual({
      clientToken: expect.stringMatching(/^[0-9a-f]{64}$/),
      fileSystemId: FS,
      path: '/apps/v1',
      uid: 1000,
      gid: 1001,
      permissions: '750',
      tags: { Name: 'v1', 'stowage.io/volume': 'v1' },
    });
    expect(vol.fields).toMatchObject({
      accessPointId: ap?.id,
      createdAccessPoint: true,
      remotePath: '/apps/v1',
    });
    expect(vol.removePolicy).toBe('delete');
    expect(r.mounter.callsOf('mount')).toEqual([]); // EFS makes the directory at the first mount

    await r.runtime.manager.mount('efs', 'v1', ID);
    expect(mountOf(r, 'v1')).toMatchObject({
      source: `${FS}:/`,
      options: ['tls', `mounttargetip=${IP_A}`, `accesspoint=${ap?.id}`],
    });
    await mkdir(join(r.root, 'apps', 'v1'), { recursive: true }); // as EFS did through the access point
    await writeFile(join(r.root, 'apps', 'v1', 'data'), 'x');
    await r.runtime.manager.unmount('efs', 'v1', ID);

    let dirAtApDeletion: string[] | undefined;
    const deleteAp = r.efs.deleteAccessPoint.bind(r.efs);
    r.efs.deleteAccessPoint = async (id) => {
      dirAtApDeletion = await readdir(join(r.root, 'apps', 'v1'));
      return deleteAp(id);
    };
    await r.runtime.manager.remove('efs', 'v1');
    expect(dirAtApDeletion).toEqual(['data']); // the access point went first ...
    expect(await readdir(join(r.root, 'apps'))).toEqual([]); // ... then the directory
    expect(r.efs.accessPoints.size).toBe(0);
  });

  it('keeps access point and directory under retain, and treats both already gone as removed', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS, [SUBNET_A]);
    await r.runtime.manager.create('efs', 'kept', { accessPoint: 'create' });
    await r.runtime.manager.remove('efs', 'kept');
    expect(r.efs.accessPoints.size).toBe(1);
    expect(ops(r)).not.toContain('deleteAccessPoint');

    await r.runtime.manager.create('efs', 'gone', { accessPoint: 'create', onRemove: 'delete' });
    r.efs.accessPoints.clear(); // deleted outside stowage; its directory never made
    await r.runtime.manager.remove('efs', 'gone');
    expect(await r.store.getVolume('gone')).toBeUndefined();
  });
});

describe('efs file systems per volume', () => {
  it('creates the file system and mount targets, then tears them down in order under delete', async () => {
    const r = await setup();
    const vol = await r.runtime.manager.create('efs', 'v1', {
      createFileSystem: 'true',
      performanceMode: 'maxIO',
      throughputMode: 'elastic',
      kmsKeyId: 'alias/stowage',
      subnets: `${SUBNET_A},${SUBNET_B}`,
      securityGroups: 'sg-0123456789abcdef0',
      accessPoint: 'create',
      onRemove: 'delete',
    });
    const [fs] = [...r.efs.fileSystems.values()];
    expect(fs?.input).toEqual({
      creationToken: expect.stringMatching(/^[0-9a-f]{64}$/),
      performanceMode: 'maxIO',
      throughputMode: 'elastic',
      encrypted: true, // implied by the key
      kmsKeyId: 'alias/stowage',
      tags: { Name: 'v1', 'stowage.io/volume': 'v1' },
    });
    expect(fs?.state).toBe('available');
    const mts = [...r.efs.mountTargets.values()];
    expect(mts.map((m) => [m.subnetId, m.securityGroups, m.state])).toEqual([
      [SUBNET_A, ['sg-0123456789abcdef0'], 'available'],
      [SUBNET_B, ['sg-0123456789abcdef0'], 'available'],
    ]);
    expect(vol.fields).toMatchObject({
      fileSystemId: fs?.id,
      createdFileSystem: true,
      accessPointId: expect.any(String),
    });
    // Waited for the file system before making mount targets, and for them before finishing.
    const created = ops(r);
    expect(created.indexOf('createMountTarget')).toBeGreaterThan(created.lastIndexOf('describeFileSystem'));
    expect(created.filter((o) => o === 'describeFileSystem').length).toBeGreaterThan(1);

    r.efs.calls.length = 0;
    await r.runtime.manager.remove('efs', 'v1');
    expect(ops(r).filter((o) => o.startsWith('delete'))).toEqual([
      'deleteAccessPoint',
      'deleteMountTarget',
      'deleteMountTarget',
      'deleteFileSystem',
    ]);
    // The file system went only once its mount targets were gone (MemEfs refuses it before).
    expect(r.efs.fileSystems.size).toBe(0);
    expect(r.efs.mountTargets.size).toBe(0);
    expect(r.efs.accessPoints.size).toBe(0);
  });

  it("puts the mount target in this host's subnet by default and keeps everything under retain", async () => {
    const r = await setup();
    const vol = await r.runtime.manager.create('efs', 'v1', { createFileSystem: 'true' });
    const [fs] = [...r.efs.fileSystems.values()];
    expect(fs?.input).not.toHaveProperty('encrypted');
    expect(r.efs.calls.filter((c) => c.startsWith('createMountTarget'))).toEqual([
      `createMountTarget ${fs?.id} ${SUBNET_A}`,
    ]);
    expect([...r.efs.mountTargets.values()][0]?.securityGroups).toEqual([]); // only what the user names
    expect(vol.fields).toMatchObject({ mountTargets: { 'us-east-1a': IP_A }, remotePath: '/v1' });
    expect((await stat(join(r.root, 'v1'))).isDirectory()).toBe(true);
    expect(vol.removePolicy).toBe('retain');

    await r.runtime.manager.remove('efs', 'v1');
    expect(ops(r).filter((o) => o.startsWith('delete'))).toEqual([]);
    expect(r.efs.fileSystems.size).toBe(1);
    expect(r.efs.mountTargets.size).toBe(1);
    expect(await readdir(r.root)).toEqual(['v1']);
  });

  it("refuses when no subnets are given and this host's subnet is unknown", async () => {
    const r = await setup({ identity: { subnetId: undefined } });
    const err = await failure(r.runtime.manager.create('efs', 'v1', { createFileSystem: 'true' }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe("driver efs: this host's subnet is unknown; give -o subnets=subnet-…");
    expect(await r.store.getVolume('v1')).toBeUndefined();
    expect(ops(r)).not.toContain('createMountTarget');
  });
});

describe('efs regressions', () => {
  it('createFileSystem=false with efs.fileSystemId in the config uses the config file system', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS, [SUBNET_A]);
    const vol = await r.runtime.manager.create('efs', 'v1', { createFileSystem: 'false' });
    expect(vol.fields.fileSystemId).toBe(FS);
  });

  it('a refused file-system creation (subnet unknown) creates nothing', async () => {
    const r = await setup({ identity: { subnetId: undefined } });
    await failure(r.runtime.manager.create('efs', 'v1', { createFileSystem: 'true' }));
    expect(r.efs.fileSystems.size).toBe(0);
  });

  it("a created file system without a mount target in this host's zone is deleted again", async () => {
    const r = await setup();
    await failure(r.runtime.manager.create('efs', 'v1', { createFileSystem: 'true', subnets: SUBNET_B }));
    expect(r.efs.fileSystems.size).toBe(0);
    expect(r.efs.mountTargets.size).toBe(0);
  });

  it('directoryPerms=01777 gives the access point permissions EFS accepts', async () => {
    const r = await setup();
    r.efs.addFileSystem(FS, [SUBNET_A]);
    await r.runtime.manager.create('efs', 'v1', { accessPoint: 'create', directoryPerms: '01777' });
    expect([...r.efs.accessPoints.values()][0]?.input?.permissions).toBe('1777');
  });
});
