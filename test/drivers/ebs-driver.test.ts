import { mkdir, mkdtemp, readlink, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canonical, DEFAULT_DEVICE_NAMES } from '../../drivers/ebs/allocator.js';
import { ebsDriver } from '../../drivers/ebs/index.js';
import type {
  AttachState,
  CreateVolumeInput,
  Ec2Api,
  Ec2Instance,
  Ec2Volume,
  Ec2VolumeModification,
} from '../../src/cloud/ec2.js';
import { fromAwsError } from '../../src/cloud/errors.js';
import { StaticIdentity } from '../../src/cloud/imds.js';
import { loadConfig } from '../../src/config.js';
import type { Driver, DriverContext, ProvisionResult } from '../../src/core/driver.js';
import type { StowageError } from '../../src/core/errors.js';
import type { AttachmentRecord, HostRecord, MountRecord, VolumeRecord } from '../../src/state/store.js';
import { FakeFileOps } from '../fakes/fake-file-ops.js';
import { FakeLoopDevices } from '../fakes/fake-loop.js';
import { FakeMounter } from '../fakes/fake-mounter.js';
import { failure } from '../helpers/failure.js';

/**
 * EbsDriver against an in-memory, stateful EC2 (volumes, attachments, the instance's device names,
 * snapshots, error injection). State moves on as EC2's does: a new volume is "creating" for a
 * couple of DescribeVolumes, an attachment is "attaching" for one, a detach "detaching" for one.
 * When an attachment to this host completes, the fake makes `<devDir>/xvdX` a symlink to a real
 * block device node (mknod in the temp dir), which is what the driver waits for.
 */

const ME = 'i-0aaaaaaaaaaaaaaa1';
const OTHER = 'i-0bbbbbbbbbbbbbbb2';
const STRANGER = 'i-0ccccccccccccccc3';
const AZ = 'us-east-1a';
const CREATED_AT = '2024-05-01T10:00:00.000Z';

interface FakeSnapshot {
  id: string;
  sizeGiB: number;
  tags: Record<string, string>;
  startTime: number;
}

interface Call {
  op: string;
  args: unknown[];
}

/** An AWS-shaped failure as SdkEc2 would report it (through the real error mapping). */
function awsError(name: string, message: string, doing: string): StowageError {
  return fromAwsError(Object.assign(new Error(message), { name }), doing);
}

class FakeEc2 implements Ec2Api {
  readonly volumes = new Map<string, Ec2Volume>();
  /** Instance id -> zone and the device names its AMI uses (root disk). */
  readonly instances = new Map<string, { az: string; devices: string[] }>();
  readonly snapshots: FakeSnapshot[] = [];
  readonly calls: Call[] = [];
  /** DescribeVolumes a new volume stays "creating" for; then it becomes `createdState`. */
  creatingFor = 2;
  createdState: 'available' | 'error' | 'creating' = 'available';
  /** Attachments never leave "attaching" (EC2's stuck attach). */
  stuckAttach = false;
  /** The block device shows up on this host once an attachment completes. */
  deviceAppears = true;
  /** Names AttachVolume refuses as already in use although the instance does not list them. */
  readonly busyNames = new Set<string>();
  /** DescribeVolumesModifications a modification stays "modifying" for; then `modifiedState`. */
  modifyingFor = 1;
  modifiedState: 'optimizing' | 'failed' = 'optimizing';
  /** Volume id -> its latest modification, with the looks left before it moves on. */
  readonly modifications = new Map<string, Ec2VolumeModification & { left: number }>();
  private readonly byToken = new Map<string, string>();
  private readonly deleted = new Map<string, Ec2Volume>();
  private readonly creatingLeft = new Map<string, number>();
  private readonly failures = new Map<string, Error[]>();
  private seq = 0;

  constructor(
    private readonly me: string,
    private readonly devDir: string,
    private readonly blockNode: string,
  ) {}

  // --- test controls ---------------------------------------------------------------------------

  failNext(op: keyof Ec2Api, err: Error): void {
    const q = this.failures.get(op) ?? [];
    q.push(err);
    this.failures.set(op, q);
  }

  callsOf(op: keyof Ec2Api): unknown[][] {
    return this.calls.filter((c) => c.op === op).map((c) => c.args);
  }

  /** Puts a volume straight into EC2, as if made outside stowage. */
  addVolume(v: Partial<Ec2Volume> & { id: string }): Ec2Volume {
    const vol: Ec2Volume = {
      sizeGiB: 10,
      state: 'available',
      availabilityZone: AZ,
      type: 'gp3',
      tags: {},
      attachments: [],
      ...v,
    };
    this.volumes.set(vol.id, vol);
    return vol;
  }

  /** Attaches a volume directly (another host did it, or an earlier run of ours). */
  async attachDirectly(id: string, instanceId: string, device: string, state: AttachState = 'attached') {
    const v = this.volumes.get(id)!;
    v.attachments.push({ instanceId, device, state });
    v.state = 'in-use';
    if (state === 'attached') await this.deviceAttached(instanceId, device);
  }

  // --- Ec2Api ------------------------------------------------------------------------------------

  async createVolume(input: CreateVolumeInput): Promise<Ec2Volume> {
    this.record('createVolume', input);
    const known = this.byToken.get(input.clientToken);
    if (known) {
      // EC2's idempotency: the same token answers the same volume, even one deleted since.
      const v = this.volumes.get(known) ?? this.deleted.get(known)!;
      return structuredClone(v);
    }
    let size = input.sizeGiB;
    if (input.snapshotId !== undefined) {
      const snap = this.snapshots.find((s) => s.id === input.snapshotId);
      if (!snap)
        throw awsError(
          'InvalidSnapshot.NotFound',
          `The snapshot '${input.snapshotId}' does not exist.`,
          'CreateVolume',
        );
      size ??= snap.sizeGiB;
    }
    if (size === undefined)
      throw awsError(
        'MissingParameter',
        'The request must contain the parameter size/snapshot',
        'CreateVolume',
      );
    const id = `vol-${(++this.seq).toString(16).padStart(17, '0')}`;
    const v: Ec2Volume = {
      id,
      sizeGiB: size,
      state: 'creating',
      availabilityZone: input.availabilityZone,
      type: input.type,
      tags: { ...input.tags },
      attachments: [],
      ...(input.snapshotId !== undefined ? { snapshotId: input.snapshotId } : {}),
    };
    this.volumes.set(id, v);
    this.byToken.set(input.clientToken, id);
    this.creatingLeft.set(id, this.creatingFor);
    return structuredClone(v);
  }

  async describeVolume(id: string): Promise<Ec2Volume | undefined> {
    this.record('describeVolume', id);
    const v = this.volumes.get(id);
    if (!v) return undefined;
    await this.advance(v);
    return structuredClone(v);
  }

  async deleteVolume(id: string): Promise<void> {
    this.record('deleteVolume', id);
    const v = this.volumes.get(id);
    if (!v) return; // NotFound is success
    if (v.attachments.length > 0)
      throw awsError(
        'VolumeInUse',
        `Volume ${id} is currently attached to ${v.attachments[0]?.instanceId}`,
        `DeleteVolume ${id}`,
      );
    this.volumes.delete(id);
    this.deleted.set(id, { ...v, state: 'deleted' });
  }

  async attachVolume(id: string, instanceId: string, device: string): Promise<void> {
    this.record('attachVolume', id, instanceId, device);
    const doing = `AttachVolume ${id} to ${instanceId} as ${device}`;
    const v = this.volumes.get(id);
    if (!v) throw awsError('InvalidVolume.NotFound', `The volume '${id}' does not exist.`, doing);
    const inst = this.instances.get(instanceId);
    if (!inst)
      throw awsError('InvalidInstanceID.NotFound', `The instance ID '${instanceId}' does not exist`, doing);
    if (inst.az !== v.availabilityZone)
      throw awsError('InvalidVolume.ZoneMismatch', 'The volume is not in the same availability zone', doing);
    if (v.attachments.length > 0)
      throw awsError('VolumeInUse', `${id} is already attached to an instance`, doing);
    const used = new Set(this.devicesOf(instanceId).map(canonical));
    if (used.has(canonical(device)) || this.busyNames.has(device)) {
      throw awsError(
        'InvalidParameterValue',
        `Invalid value '${device}' for unixDevice. Attachment point ${device} is already in use`,
        doing,
      );
    }
    v.attachments.push({ instanceId, device, state: 'attaching' });
    v.state = 'in-use';
  }

  async detachVolume(id: string, instanceId: string, opts?: { force?: boolean }): Promise<void> {
    this.record('detachVolume', id, instanceId, ...(opts ? [opts] : []));
    const a = this.volumes.get(id)?.attachments.find((x) => x.instanceId === instanceId);
    if (!a) return; // not attached: success, as the seam promises
    a.state = 'detaching';
  }

  async describeInstance(id: string): Promise<Ec2Instance | undefined> {
    this.record('describeInstance', id);
    const inst = this.instances.get(id);
    return inst ? { id, availabilityZone: inst.az, devices: this.devicesOf(id) } : undefined;
  }

  async findInstanceByPrivateDnsName(name: string): Promise<Ec2Instance | undefined> {
    this.record('findInstanceByPrivateDnsName', name);
    return undefined;
  }

  async describeSnapshot(id: string): Promise<{ id: string; sizeGiB: number } | undefined> {
    this.record('describeSnapshot', id);
    const s = this.snapshots.find((x) => x.id === id);
    return s ? { id: s.id, sizeGiB: s.sizeGiB } : undefined;
  }

  async findSnapshotByTag(key: string, value: string): Promise<{ id: string; sizeGiB: number } | undefined> {
    this.record('findSnapshotByTag', key, value);
    const [s] = this.snapshots.filter((x) => x.tags[key] === value).sort((a, b) => b.startTime - a.startTime);
    return s ? { id: s.id, sizeGiB: s.sizeGiB } : undefined;
  }

  async modifyVolume(id: string, sizeGiB: number): Promise<Ec2VolumeModification> {
    this.record('modifyVolume', id, sizeGiB);
    const doing = `ModifyVolume ${id} to ${sizeGiB} GiB`;
    const v = this.volumes.get(id);
    if (!v) throw awsError('InvalidVolume.NotFound', `The volume '${id}' does not exist.`, doing);
    const last = this.modifications.get(id);
    if (last && last.state !== 'completed' && last.state !== 'failed') {
      throw awsError('IncorrectModificationState', `Volume '${id}' is already being modified.`, doing);
    }
    if (sizeGiB <= v.sizeGiB) {
      throw awsError('InvalidParameterValue', 'New size cannot be smaller than existing size', doing);
    }
    const m = {
      volumeId: id,
      state: 'modifying' as const,
      targetSizeGiB: sizeGiB,
      originalSizeGiB: v.sizeGiB,
      left: this.modifyingFor,
    };
    this.modifications.set(id, m);
    v.sizeGiB = sizeGiB; // EC2 shows the new size at once
    const { left: _, ...out } = m;
    return out;
  }

  async describeVolumeModification(id: string): Promise<Ec2VolumeModification | undefined> {
    this.record('describeVolumeModification', id);
    const m = this.modifications.get(id);
    if (!m) return undefined;
    if (m.state === 'modifying') {
      if (m.left > 0) m.left--;
      else {
        m.state = this.modifiedState;
        if (m.state === 'failed') m.statusMessage = 'Volume modification failed: internal error';
      }
    }
    const { left: _, ...out } = m;
    return structuredClone(out);
  }

  // --- internals ---------------------------------------------------------------------------------

  private record(op: keyof Ec2Api, ...args: unknown[]): void {
    this.calls.push({ op, args });
    const err = this.failures.get(op)?.shift();
    if (err) throw err;
  }

  private devicesOf(instanceId: string): string[] {
    const attached = [...this.volumes.values()].flatMap((v) =>
      v.attachments.filter((a) => a.instanceId === instanceId).map((a) => a.device),
    );
    return [...(this.instances.get(instanceId)?.devices ?? []), ...attached];
  }

  /** One step of EC2's asynchronous state changes, taken when the volume is looked at. */
  private async advance(v: Ec2Volume): Promise<void> {
    if (v.state === 'creating') {
      const left = this.creatingLeft.get(v.id) ?? 0;
      if (left > 0) this.creatingLeft.set(v.id, left - 1);
      else v.state = this.createdState;
    }
    for (const a of [...v.attachments]) {
      if (a.state === 'attaching' && !this.stuckAttach) {
        a.state = 'attached';
        await this.deviceAttached(a.instanceId, a.device);
      } else if (a.state === 'detaching') {
        v.attachments.splice(v.attachments.indexOf(a), 1);
        if (a.instanceId === this.me) await rm(this.nodeOf(a.device), { force: true });
      }
    }
    if (v.state === 'in-use' && v.attachments.length === 0) v.state = 'available';
  }

  private async deviceAttached(instanceId: string, device: string): Promise<void> {
    if (instanceId === this.me && this.deviceAppears) await symlink(this.blockNode, this.nodeOf(device));
  }

  /** Xen shows /dev/sdf as /dev/xvdf. */
  private nodeOf(device: string): string {
    return join(this.devDir, basename(canonical(device)));
  }
}

/** The shared state as the driver sees it: hosts and their mounts. */
class FakeState {
  readonly hosts: HostRecord[] = [];
  readonly mounts: MountRecord[] = [];
  /** Hosts with a live lease; undefined: a store without leases (every host counts as live). */
  live: string[] | undefined;

  host(id: string, instanceId: string): void {
    this.hosts.push({ id, identity: { instanceId, availabilityZone: AZ }, lastSeen: CREATED_AT });
  }

  mount(volume: string, host: string, refs: Record<string, number>): void {
    this.mounts.push({
      volume,
      host,
      mountpoint: `/var/lib/stowage/volumes/${volume}`,
      refs,
      state: 'mounted',
      updatedAt: CREATED_AT,
    });
  }
}

let dir: string;
let devDir: string;
let blockNode: string; // real path of the block device node the attached volumes "are"
let ec2: FakeEc2;
let state: FakeState;
let logLines: Record<string, unknown>[];
let driver: Driver;

async function setup(ebs: Record<string, unknown> = {}): Promise<void> {
  const config = loadConfig({
    file: '/dev/null',
    env: {},
    flags: {
      dataDir: join(dir, 'data'),
      hostId: 'host-a',
      drivers: ['ebs'],
      timeouts: { deviceWaitMs: 300 },
      ebs: {
        devDir,
        byIdDir: join(dir, 'by-id'),
        sysBlockDir: join(dir, 'sys-block'),
        createTimeout: '5s',
        attachTimeout: '5s',
        ...ebs,
      },
    },
  });
  const mounter = new FakeMounter();
  logLines = [];
  const ctx: DriverContext = {
    host: config.hostId,
    log: pino({ level: 'debug' }, { write: (line: string) => logLines.push(JSON.parse(line)) }),
    mounter,
    loop: new FakeLoopDevices(mounter),
    files: new FakeFileOps(mounter),
    probeTcp: async () => ({ ok: true, detail: 'unused' }),
    timeouts: config.timeouts,
    stagingDir: config.stagingDir,
    config: config.ebs,
    state: {
      hosts: async () => structuredClone(state.hosts),
      mounts: async (volume) => structuredClone(state.mounts.filter((m) => m.volume === volume)),
      liveHosts: async () => (state.live ? new Set(state.live) : undefined),
    },
    cloud: {
      ec2,
      identity: new StaticIdentity({ instanceId: ME, availabilityZone: AZ, region: 'us-east-1' }),
    },
  };
  driver = ebsDriver(ctx);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-ebs-'));
  devDir = join(dir, 'dev');
  await mkdir(devDir);
  await execa('mknod', [join(dir, 'blk'), 'b', '7', '200']); // loop major, a minor nobody uses
  blockNode = await realpath(join(dir, 'blk'));
  ec2 = new FakeEc2(ME, devDir, blockNode);
  ec2.instances.set(ME, { az: AZ, devices: ['/dev/xvda'] });
  ec2.instances.set(OTHER, { az: AZ, devices: ['/dev/xvda'] });
  ec2.instances.set(STRANGER, { az: AZ, devices: ['/dev/xvda'] });
  state = new FakeState();
  state.host('host-a', ME);
  state.host('host-b', OTHER);
  await setup();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true }); // the device node and the symlinks with it
});

function provision(name: string, raw: Record<string, string> = {}, createdAt = CREATED_AT) {
  const parsed = driver.parseOptions(raw);
  return driver.provision({
    name,
    options: parsed.values,
    givenOptions: parsed.given,
    resuming: false,
    createdAt,
    noted: {},
    note: async () => undefined,
  });
}

/** Provisions `name` and returns the record the core would keep. */
async function create(name: string, raw: Record<string, string> = {}): Promise<VolumeRecord> {
  const parsed = driver.parseOptions(raw);
  const res: ProvisionResult = await provision(name, raw);
  return {
    name,
    driver: 'ebs',
    options: parsed.values,
    givenOptions: parsed.given,
    removePolicy: res.removePolicy,
    adopted: res.adopted,
    createdAt: CREATED_AT,
    status: 'ready',
    fields: res.fields,
  };
}

function attachmentOf(vol: VolumeRecord, device: string): AttachmentRecord {
  return { volume: vol.name, host: 'host-a', device, state: 'attached', updatedAt: CREATED_AT };
}

const idOf = (vol: VolumeRecord) => vol.fields.volumeId as string;

/** What the core does to mount here: attach (the cloud's name), then find the local block device. */
async function attachHere(vol: VolumeRecord): Promise<string> {
  const { device } = await driver.attach!(vol);
  return driver.localDevice!(vol, attachmentOf(vol, device));
}
const createInputs = () => ec2.callsOf('createVolume').map(([input]) => input as CreateVolumeInput);

describe('ebs provision', () => {
  it('uses a ClientToken that is stable for the same name and creation time', async () => {
    const first = await provision('v1');
    const again = await provision('v1'); // a retried or resumed Create
    const [a, b] = createInputs();
    expect(a?.clientToken).toMatch(/^[0-9a-f]{64}$/);
    expect(b?.clientToken).toBe(a?.clientToken);
    expect(again.fields.volumeId).toBe(first.fields.volumeId);
    expect(ec2.volumes.size).toBe(1);
  });

  it('uses a new ClientToken for a later Create of the same name, and for another name', async () => {
    const first = await provision('v1', {}, CREATED_AT);
    const later = await provision('v1', {}, '2024-05-02T08:00:00.000Z');
    await provision('v2', {}, CREATED_AT);
    const tokens = createInputs().map((i) => i.clientToken);
    expect(new Set(tokens).size).toBe(3);
    expect(later.fields.volumeId).not.toBe(first.fields.volumeId);
    expect(ec2.volumes.size).toBe(3);
  });

  it('asks EC2 for encryption when only kmsKeyId is given', async () => {
    await provision('v1', { kmsKeyId: 'alias/team' });
    expect(createInputs()[0]).toMatchObject({ kmsKeyId: 'alias/team', encrypted: true });
  });

  it('tags the volume with Name and stowage.io/volume over the user tags', async () => {
    await provision('data-1', { tags: 'team=storage,Name=mine,env=prod' });
    expect(createInputs()[0]?.tags).toEqual({
      team: 'storage',
      env: 'prod',
      Name: 'data-1',
      'stowage.io/volume': 'data-1',
    });
  });

  it("sends only the fields given, in this host's zone by default", async () => {
    await provision('v1');
    const [input] = createInputs();
    expect(input).toEqual({
      clientToken: expect.any(String),
      type: 'gp3',
      availabilityZone: AZ,
      sizeGiB: 10,
      tags: { Name: 'v1', 'stowage.io/volume': 'v1' },
    });
  });

  it('passes iops, throughput, encryption, the key and the zone when given', async () => {
    await provision('v1', {
      size: '200',
      iops: '6000',
      throughput: '500',
      encrypted: 'true',
      kmsKeyId: 'alias/team',
      availabilityZone: 'us-east-1c',
    });
    expect(createInputs()[0]).toMatchObject({
      sizeGiB: 200,
      iops: 6000,
      throughput: 500,
      encrypted: true,
      kmsKeyId: 'alias/team',
      availabilityZone: 'us-east-1c',
    });
  });

  it('waits until the volume is available and records its facts', async () => {
    const res = await provision('v1', { size: '20', type: 'gp2' });
    const id = res.fields.volumeId as string;
    // "creating" for two looks, "available" at the third
    expect(ec2.callsOf('describeVolume')).toEqual([[id], [id], [id]]);
    expect(res).toEqual({
      adopted: false,
      removePolicy: 'delete',
      fields: { volumeId: id, availabilityZone: AZ, sizeGiB: 20, type: 'gp2' },
    });
    expect(ec2.volumes.get(id)?.state).toBe('available');
  });

  it('records retain when onRemove=retain is asked for a created volume', async () => {
    expect((await provision('v1', { onRemove: 'retain' })).removePolicy).toBe('retain');
  });

  it('deletes a volume that went into state error and reports it', async () => {
    ec2.createdState = 'error';
    const err = await failure(provision('v1'));
    const deletes = ec2.callsOf('deleteVolume');
    expect(deletes).toHaveLength(1);
    const id = deletes[0]?.[0] as string;
    expect(id).toMatch(/^vol-/);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(`EBS volume ${id} went into state error`);
    expect(ec2.volumes.size).toBe(0);
  });

  it('deletes a volume that stays "creating" past createTimeout', async () => {
    await setup({ createTimeout: '300ms' });
    ec2.createdState = 'creating';
    const err = await failure(provision('v1'));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toMatch(
      /^timed out after 300 ms waiting for EBS volume vol-[0-9a-f]+ to become available\.$/,
    );
    expect(ec2.callsOf('deleteVolume')).toHaveLength(1);
    expect(ec2.volumes.size).toBe(0);
  });

  it('says "delete it by hand" with the volume id when the delete fails too, and logs it', async () => {
    ec2.createdState = 'error';
    ec2.failNext('deleteVolume', awsError('RequestLimitExceeded', 'Request limit exceeded.', 'DeleteVolume'));
    const err = await failure(provision('v1'));
    const [id] = [...ec2.volumes.keys()];
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe(
      `EBS volume ${id} went into state error; deleting ${id} failed too (DeleteVolume failed: ` +
        'RequestLimitExceeded: Request limit exceeded. (AWS did not serve the request; it was retried and can ' +
        'be tried again later)): delete it by hand',
    );
    expect(ec2.volumes.get(id!)?.state).toBe('error'); // left behind, and said so
    expect(logLines).toContainEqual(
      expect.objectContaining({
        level: 50,
        volume: 'v1',
        volumeId: id,
        msg: 'EBS volume left behind after a failed create',
      }),
    );
  });

  it('adopts an existing volume by volumeId and retains it by default', async () => {
    ec2.addVolume({
      id: 'vol-0123456789abcdef0',
      sizeGiB: 77,
      type: 'io2',
      snapshotId: 'snap-0123456789abcdef0',
    });
    const res = await provision('old', { volumeId: 'vol-0123456789abcdef0' });
    expect(res).toEqual({
      adopted: true,
      removePolicy: 'retain',
      fields: {
        volumeId: 'vol-0123456789abcdef0',
        availabilityZone: AZ,
        sizeGiB: 77,
        type: 'io2',
        snapshotId: 'snap-0123456789abcdef0',
      },
    });
    expect(ec2.callsOf('createVolume')).toEqual([]);
  });

  it('deletes an adopted volume on Remove only when onRemove=delete was given explicitly', async () => {
    ec2.addVolume({ id: 'vol-0123456789abcdef0' });
    expect(
      (await provision('old', { volumeId: 'vol-0123456789abcdef0', onRemove: 'delete' })).removePolicy,
    ).toBe('delete');
    expect(
      (await provision('old', { volumeId: 'vol-0123456789abcdef0', onRemove: 'retain' })).removePolicy,
    ).toBe('retain');
  });

  it('refuses to adopt a volume that does not exist', async () => {
    const err = await failure(provision('old', { volumeId: 'vol-0123456789abcdef0' }));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('EBS volume vol-0123456789abcdef0 does not exist in this region');
  });

  it('refuses a size below the snapshot before any CreateVolume', async () => {
    ec2.snapshots.push({ id: 'snap-0123456789abcdef0', sizeGiB: 100, tags: {}, startTime: 1 });
    const err = await failure(provision('v1', { snapshotId: 'snap-0123456789abcdef0', size: '50' }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(
      "driver ebs: size=50 GiB is below the snapshot's 100 GiB; give at least that, or no size",
    );
    expect(ec2.callsOf('createVolume')).toEqual([]);
  });

  it('creates from a snapshot at its own size when no size is given', async () => {
    ec2.snapshots.push({ id: 'snap-0123456789abcdef0', sizeGiB: 100, tags: {}, startTime: 1 });
    const res = await provision('v1', { snapshotId: 'snap-0123456789abcdef0' });
    expect(createInputs()[0]).not.toHaveProperty('sizeGiB');
    expect(createInputs()[0]?.snapshotId).toBe('snap-0123456789abcdef0');
    expect(res.fields).toMatchObject({ sizeGiB: 100, snapshotId: 'snap-0123456789abcdef0' });
  });

  it('refuses a snapshot that does not exist before any CreateVolume', async () => {
    const err = await failure(provision('v1', { snapshotId: 'snap-0123456789abcdef0' }));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('snapshot snap-0123456789abcdef0 does not exist in this region');
    expect(ec2.callsOf('createVolume')).toEqual([]);
  });

  it('resolves snapshotTag to the newest snapshot with that tag', async () => {
    ec2.snapshots.push(
      { id: 'snap-00000000000000001', sizeGiB: 8, tags: { Name: 'nightly' }, startTime: 1000 },
      { id: 'snap-00000000000000002', sizeGiB: 8, tags: { Name: 'nightly' }, startTime: 3000 },
      { id: 'snap-00000000000000003', sizeGiB: 8, tags: { Name: 'weekly' }, startTime: 9000 },
      { id: 'snap-00000000000000004', sizeGiB: 8, tags: { Name: 'nightly' }, startTime: 2000 },
    );
    const res = await provision('v1', { snapshotTag: 'nightly' });
    expect(ec2.callsOf('findSnapshotByTag')).toEqual([['Name', 'nightly']]);
    expect(createInputs()[0]?.snapshotId).toBe('snap-00000000000000002');
    expect(res.fields.snapshotId).toBe('snap-00000000000000002');
  });

  it('looks at the tag named by snapshotTagName', async () => {
    ec2.snapshots.push({ id: 'snap-00000000000000005', sizeGiB: 8, tags: { backup: 'db' }, startTime: 1 });
    await provision('v1', { snapshotTag: 'db', snapshotTagName: 'backup' });
    expect(createInputs()[0]?.snapshotId).toBe('snap-00000000000000005');
  });

  it('refuses a snapshotTag no snapshot has', async () => {
    const err = await failure(provision('v1', { snapshotTag: 'nightly' }));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('no snapshot has tag Name=nightly');
    expect(ec2.callsOf('createVolume')).toEqual([]);
  });

  it('passes an EC2 failure of CreateVolume through and leaves nothing behind', async () => {
    ec2.failNext(
      'createVolume',
      awsError(
        'VolumeLimitExceeded',
        'You have exceeded your maximum gp3 storage limit',
        'CreateVolume in us-east-1a',
      ),
    );
    const err = await failure(provision('v1'));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/^CreateVolume in us-east-1a failed: VolumeLimitExceeded: /);
    expect(ec2.volumes.size).toBe(0);
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
  });
});

describe('ebs attach', () => {
  it('attaches as /dev/xvdf and returns the block device that appeared', async () => {
    const vol = await create('v1');
    expect(await attachHere(vol)).toBe(blockNode);
    expect(ec2.callsOf('attachVolume')).toEqual([[idOf(vol), ME, '/dev/xvdf']]);
    expect(ec2.volumes.get(idOf(vol))?.attachments).toEqual([
      { instanceId: ME, device: '/dev/xvdf', state: 'attached' },
    ]);
    expect(await readlink(join(devDir, 'xvdf'))).toBe(blockNode);
  });

  it('skips the names the instance already uses, in either spelling', async () => {
    ec2.instances.set(ME, { az: AZ, devices: ['/dev/sda1', '/dev/sdf', '/dev/xvdg'] });
    const vol = await create('v1');
    await driver.attach!(vol);
    expect(ec2.callsOf('attachVolume')).toEqual([[idOf(vol), ME, '/dev/xvdh']]);
  });

  it('gives a second volume the next name', async () => {
    const a = await create('a');
    const b = await create('b');
    await driver.attach!(a);
    await driver.attach!(b);
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdg']);
  });

  it('taints a name EC2 rejects as already in use and succeeds with the next', async () => {
    ec2.busyNames.add('/dev/xvdf');
    const a = await create('a');
    expect(await attachHere(a)).toBe(blockNode);
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdg']);
    // /dev/xvdf is never tried again on this instance, even once EC2 would take it.
    ec2.busyNames.clear();
    const b = await create('b');
    await driver.attach!(b);
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdg', '/dev/xvdh']);
  });

  it('gives up after three names in use', async () => {
    for (const n of ['/dev/xvdf', '/dev/xvdg', '/dev/xvdh']) ec2.busyNames.add(n);
    const vol = await create('v1');
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(`could not find a free device name on ${ME} after 3 tries`);
    expect(ec2.volumes.get(idOf(vol))?.attachments).toEqual([]);
  });

  it('says so when the instance has no free name left', async () => {
    ec2.instances.set(ME, { az: AZ, devices: ['/dev/xvda', ...DEFAULT_DEVICE_NAMES] });
    const vol = await create('v1');
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(`no free device name left on ${ME} (all in use or tainted by failed attaches)`);
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('releases the name after another AttachVolume failure', async () => {
    const vol = await create('v1');
    ec2.failNext(
      'attachVolume',
      awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 'AttachVolume'),
    );
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('PERMISSION_DENIED');
    await driver.attach!(vol);
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdf']);
  });

  it('times out a stuck "attaching", taints the name and force-detaches', async () => {
    await setup({ attachTimeout: '300ms' });
    const vol = await create('v1');
    ec2.stuckAttach = true;
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 300 ms waiting for EBS volume ${idOf(vol)} to attach to ${ME} as /dev/xvdf.`,
    );
    expect(ec2.callsOf('detachVolume')).toEqual([[idOf(vol), ME, { force: true }]]);
    // EC2 lets go of it; the next attach avoids the tainted name.
    ec2.stuckAttach = false;
    await ec2.describeVolume(idOf(vol));
    expect(ec2.volumes.get(idOf(vol))?.attachments).toEqual([]);
    expect(await attachHere(vol)).toBe(blockNode);
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdg']);
  });

  it('times out when the block device never appears on the host', async () => {
    ec2.deviceAppears = false;
    const vol = await create('v1');
    const err = await failure(attachHere(vol));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 300 ms waiting for the block device of ${idOf(vol)} (attached as /dev/xvdf) to appear. ` +
        'Neither the requested name nor an NVMe device with its serial showed up.',
    );
  });

  it('finds the volume as an NVMe disk by its by-id link', async () => {
    ec2.deviceAppears = false;
    const vol = await create('v1');
    await mkdir(join(dir, 'by-id'));
    await symlink(
      blockNode,
      join(dir, 'by-id', `nvme-Amazon_Elastic_Block_Store_${idOf(vol).replace('-', '')}`),
    );
    expect(await attachHere(vol)).toBe(blockNode);
  });

  it('is idempotent: a volume already attached here is not attached again', async () => {
    const vol = await create('v1');
    await ec2.attachDirectly(idOf(vol), ME, '/dev/xvdk');
    expect(await attachHere(vol)).toBe(blockNode);
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('waits for an attachment here that is still attaching', async () => {
    const vol = await create('v1');
    await ec2.attachDirectly(idOf(vol), ME, '/dev/xvdk', 'attaching');
    expect(await attachHere(vol)).toBe(blockNode);
    expect(ec2.callsOf('attachVolume')).toEqual([]);
    expect(await readlink(join(devDir, 'xvdk'))).toBe(blockNode);
  });

  it('refuses a volume in another zone', async () => {
    ec2.addVolume({ id: 'vol-0123456789abcdef0', availabilityZone: 'us-east-1b' });
    const vol = await create('far', { volumeId: 'vol-0123456789abcdef0' });
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(
      'volume far (vol-0123456789abcdef0) is in us-east-1b but this host is in us-east-1a; ' +
        'EBS volumes attach only in their own zone',
    );
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('says which EBS volume is gone', async () => {
    const vol = await create('v1');
    ec2.volumes.clear();
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(`EBS volume ${idOf(vol)} of volume v1 no longer exists`);
  });

  it('refuses a record without an EBS volume id', async () => {
    const vol = await create('v1');
    const err = await failure(driver.attach!({ ...vol, fields: {} }));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe('volume v1 has no EBS volume id recorded');
  });
});

describe('ebs attach of a volume attached to another instance', () => {
  it('refuses without preempt and says how many mounts the other host has', async () => {
    const vol = await create('v1');
    await ec2.attachDirectly(idOf(vol), OTHER, '/dev/xvdf');
    state.mount('v1', 'host-b', { [`${'a'.repeat(64)}`]: 1, [`${'b'.repeat(64)}`]: 1 });
    state.mount('v1', 'host-c', { [`${'c'.repeat(64)}`]: 3 }); // not the host that holds it
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `volume v1 is attached to instance ${OTHER} (host host-b) with 2 active mounts; ` +
        'release it there, or create the volume with preempt=true to take it over',
    );
    expect(ec2.callsOf('detachVolume')).toEqual([]);
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('refuses without preempt even when the other host has no mounts', async () => {
    const vol = await create('v1');
    await ec2.attachDirectly(idOf(vol), OTHER, '/dev/xvdf');
    const err = await failure(driver.attach!(vol));
    expect(err.message).toBe(
      `volume v1 is attached to instance ${OTHER} (host host-b) with 0 active mounts; ` +
        'release it there, or create the volume with preempt=true to take it over',
    );
    expect(ec2.callsOf('detachVolume')).toEqual([]);
  });

  it('refuses with preempt while the store shows mounts on that host', async () => {
    const vol = await create('v1', { preempt: 'true' });
    await ec2.attachDirectly(idOf(vol), OTHER, '/dev/xvdf');
    state.mount('v1', 'host-b', { [`${'a'.repeat(64)}`]: 1 });
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `volume v1 is attached to instance ${OTHER} (host host-b) with 1 active mount; ` +
        'preempt takes a volume only when nobody uses it',
    );
    expect(ec2.callsOf('detachVolume')).toEqual([]);
    expect(ec2.volumes.get(idOf(vol))?.attachments).toEqual([
      { instanceId: OTHER, device: '/dev/xvdf', state: 'attached' },
    ]);
  });

  it('refuses with preempt when the other instance is not a stowage host', async () => {
    const vol = await create('v1', { preempt: 'true' });
    await ec2.attachDirectly(idOf(vol), STRANGER, '/dev/xvdf');
    const err = await failure(driver.attach!(vol));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `volume v1 is attached to instance ${STRANGER} (not a stowage host); ` +
        'nothing proves it is unused there, so it is not force-detached',
    );
    expect(ec2.callsOf('detachVolume')).toEqual([]);
  });

  it('refuses without preempt when the other instance is not a stowage host', async () => {
    const vol = await create('v1');
    await ec2.attachDirectly(idOf(vol), STRANGER, '/dev/xvdf');
    const err = await failure(driver.attach!(vol));
    expect(err.message).toBe(
      `volume v1 is attached to instance ${STRANGER} (not a stowage host); ` +
        'release it there, or create the volume with preempt=true to take it over',
    );
  });

  it('force-detaches and attaches here with preempt when that host has no mounts', async () => {
    const vol = await create('v1', { preempt: 'true' });
    await ec2.attachDirectly(idOf(vol), OTHER, '/dev/xvdf');
    state.mount('other-volume', 'host-b', { [`${'a'.repeat(64)}`]: 1 }); // another volume's mount
    state.mount('v1', 'host-b', {}); // a teardown that has not finished: no users
    expect(await attachHere(vol)).toBe(blockNode);
    expect(ec2.callsOf('detachVolume')).toEqual([[idOf(vol), OTHER, { force: true }]]);
    expect(ec2.callsOf('attachVolume')).toEqual([[idOf(vol), ME, '/dev/xvdf']]);
    expect(ec2.volumes.get(idOf(vol))?.attachments).toEqual([
      { instanceId: ME, device: '/dev/xvdf', state: 'attached' },
    ]);
    expect(logLines).toContainEqual(
      expect.objectContaining({
        level: 40,
        volume: 'v1',
        volumeId: idOf(vol),
        from: OTHER,
        fromHost: 'host-b',
        msg: 'preempt: force-detaching from another host',
      }),
    );
  });
});

describe('ebs attach to another host (Kubernetes controller-manager)', () => {
  const hostB = { host: 'host-b', identity: { instanceId: OTHER, availabilityZone: AZ } };

  it("attaches to the host's instance and answers EC2's device name without waiting for a local disk", async () => {
    const vol = await create('v1');
    expect(await driver.attach!(vol, hostB)).toEqual({ device: '/dev/xvdf' });
    expect(ec2.callsOf('attachVolume')).toEqual([[idOf(vol), OTHER, '/dev/xvdf']]);
    expect(ec2.volumes.get(idOf(vol))?.attachments).toEqual([
      { instanceId: OTHER, device: '/dev/xvdf', state: 'attached' },
    ]);
    // Attached again (a retry): the same name, no second AttachVolume.
    expect(await driver.attach!(vol, hostB)).toEqual({ device: '/dev/xvdf' });
    expect(ec2.callsOf('attachVolume')).toHaveLength(1);
  });

  it("asks EC2 for the zone when the host's identity lacks it, and refuses another zone", async () => {
    const vol = await create('v1');
    ec2.instances.set(OTHER, { az: 'eu-west-1c', devices: ['/dev/xvda'] });
    const err = await failure(driver.attach!(vol, { host: 'host-b', identity: { instanceId: OTHER } }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(
      `volume v1 (${idOf(vol)}) is in ${AZ} but host host-b (${OTHER}) is in eu-west-1c; EBS volumes attach only in their own zone`,
    );
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('refuses a host that never recorded an instance id, and names what to do', async () => {
    const vol = await create('v1');
    const err = await failure(driver.attach!(vol, { host: 'node-7', identity: {} }));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(
      'host node-7 has no EC2 instance id recorded; run stowage on it once (daemon or hosts register) so it registers itself',
    );
  });

  it("detaches from the host's instance, not from this one", async () => {
    const vol = await create('v1');
    await ec2.attachDirectly(idOf(vol), OTHER, '/dev/xvdf');
    await driver.detach!(vol, { ...attachmentOf(vol, '/dev/xvdf'), host: 'host-b' }, hostB);
    expect(ec2.callsOf('detachVolume')).toEqual([[idOf(vol), OTHER]]);
    expect(ec2.volumes.get(idOf(vol))?.attachments).toEqual([]);
  });
});

describe('ebs detach', () => {
  it('detaches from this instance and waits until EC2 has let go', async () => {
    const vol = await create('v1');
    const { device } = await driver.attach!(vol);
    await driver.detach!(vol, attachmentOf(vol, device));
    expect(ec2.callsOf('detachVolume')).toEqual([[idOf(vol), ME]]);
    expect(ec2.volumes.get(idOf(vol))).toMatchObject({ state: 'available', attachments: [] });
  });

  it('does nothing for a volume that is not attached here', async () => {
    const vol = await create('v1');
    await ec2.attachDirectly(idOf(vol), OTHER, '/dev/xvdf');
    await driver.detach!(vol, attachmentOf(vol, blockNode));
    expect(ec2.callsOf('detachVolume')).toEqual([]);
    expect(ec2.volumes.get(idOf(vol))?.attachments).toHaveLength(1);
  });

  it('treats a volume that is gone as detached', async () => {
    const vol = await create('v1');
    ec2.volumes.clear();
    await driver.detach!(vol, attachmentOf(vol, blockNode));
    expect(ec2.callsOf('detachVolume')).toEqual([]);
  });
});

describe('ebs destroy', () => {
  it('refuses while the volume is attached and deletes nothing', async () => {
    const vol = await create('v1');
    await ec2.attachDirectly(idOf(vol), OTHER, '/dev/xvdf');
    const err = await failure(driver.destroy(vol));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(`EBS volume ${idOf(vol)} is still attached to ${OTHER}; nothing was deleted`);
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
    expect(ec2.volumes.has(idOf(vol))).toBe(true);
  });

  it('deletes a detached volume', async () => {
    const vol = await create('v1');
    const { device } = await driver.attach!(vol);
    await driver.detach!(vol, attachmentOf(vol, device));
    await driver.destroy(vol);
    expect(ec2.callsOf('deleteVolume')).toEqual([[idOf(vol)]]);
    expect(ec2.volumes.size).toBe(0);
  });

  it('treats a volume that is already gone as destroyed', async () => {
    const vol = await create('v1');
    ec2.volumes.clear();
    await driver.destroy(vol);
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
  });

  it('keeps the volume under retain without asking EC2', async () => {
    const vol = await create('v1', { onRemove: 'retain' });
    const before = ec2.calls.length;
    await driver.destroy(vol);
    expect(ec2.calls.length).toBe(before);
    expect(ec2.volumes.has(idOf(vol))).toBe(true);
    expect(logLines).toContainEqual(expect.objectContaining({ volumeId: idOf(vol), msg: 'EBS volume kept' }));
  });

  it('keeps an adopted volume', async () => {
    ec2.addVolume({ id: 'vol-0123456789abcdef0' });
    const vol = await create('old', { volumeId: 'vol-0123456789abcdef0' });
    await driver.destroy(vol);
    expect(ec2.volumes.has('vol-0123456789abcdef0')).toBe(true);
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
  });
});

describe('ebs host facts', () => {
  it('describes a volume from its recorded fields', async () => {
    const vol = await create('v1', { size: '20', fsType: 'xfs' });
    expect(driver.describe(vol)).toEqual({
      volumeId: idOf(vol),
      availabilityZone: AZ,
      size: '20G',
      type: 'gp3',
      fsType: 'xfs',
    });
  });

  it('mounts the attached device with the volume fsType', async () => {
    const vol = await create('v1', { fsType: 'xfs' });
    expect(driver.mountSpec(vol, attachmentOf(vol, blockNode))).toEqual({
      kind: 'block',
      device: blockNode,
      fsType: 'xfs',
      mountOptions: [],
    });
  });

  it('reports its instance identity and a doctor check of the EC2 API', async () => {
    expect(await driver.hostIdentity!()).toEqual({
      instanceId: ME,
      availabilityZone: AZ,
      region: 'us-east-1',
    });
    expect(await driver.doctor!()).toEqual([
      { name: 'ebs: identity', ok: true, detail: `${ME} in ${AZ}` },
      { name: 'ebs: EC2 API', ok: true, detail: `DescribeInstances sees ${ME}` },
    ]);
    ec2.instances.delete(ME);
    const [, api] = await driver.doctor!();
    expect(api).toEqual({ name: 'ebs: EC2 API', ok: false, detail: `EC2 does not know instance ${ME}` });
  });
});

describe('ebs expand', () => {
  const GiB = 1024 ** 3;

  it('grows to the requested size rounded up to whole GiB, waits for "optimizing" and records it', async () => {
    const vol = await create('v1', { size: '10' });
    const res = await driver.expand!(vol, 10 * GiB + 1);
    expect(ec2.callsOf('modifyVolume')).toEqual([[idOf(vol), 11]]);
    expect(res).toEqual({ sizeBytes: 11 * GiB, fields: { ...vol.fields, sizeGiB: 11 } });
    expect(ec2.modifications.get(idOf(vol))?.state).toBe('optimizing');
    // Looked at before (nothing running), then until it left "modifying".
    expect(ec2.callsOf('describeVolumeModification')).toHaveLength(3);
    expect(driver.describe({ ...vol, fields: res.fields! })).toMatchObject({ size: '11G' });
  });

  it('changes nothing for a volume that is already that size or bigger: it never shrinks', async () => {
    const vol = await create('v1', { size: '10' });
    expect(await driver.expand!(vol, 10 * GiB)).toEqual({ sizeBytes: 10 * GiB });
    expect(await driver.expand!(vol, 5 * GiB)).toEqual({ sizeBytes: 10 * GiB });
    expect(ec2.callsOf('modifyVolume')).toEqual([]);
  });

  it('is idempotent: a retry after EC2 took the change starts nothing new', async () => {
    const vol = await create('v1', { size: '10' });
    const first = await driver.expand!(vol, 20 * GiB);
    const again = await driver.expand!({ ...vol, fields: first.fields! }, 20 * GiB);
    expect(again).toEqual({ sizeBytes: 20 * GiB });
    expect(ec2.callsOf('modifyVolume')).toHaveLength(1);
  });

  it('waits for a modification still running from an earlier try instead of starting another', async () => {
    const vol = await create('v1', { size: '10' });
    ec2.modifyingFor = 3;
    await ec2.modifyVolume(idOf(vol), 20); // an earlier call whose reply was lost
    const res = await driver.expand!(vol, 20 * GiB);
    expect(res.sizeBytes).toBe(20 * GiB);
    expect(ec2.callsOf('modifyVolume')).toHaveLength(1);
    expect(ec2.modifications.get(idOf(vol))?.state).toBe('optimizing');
  });

  it("reports a failed modification with EC2's message", async () => {
    const vol = await create('v1', { size: '10' });
    ec2.modifiedState = 'failed';
    const err = await failure(driver.expand!(vol, 12 * GiB));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(
      `EC2 could not grow ${idOf(vol)} (volume v1) to 12 GiB: Volume modification failed: internal error`,
    );
  });

  it('gives up at modifyTimeout while EC2 is still modifying, and says so', async () => {
    await setup({ modifyTimeout: '200ms' });
    const vol = await create('v1', { size: '10' });
    ec2.modifyingFor = Number.POSITIVE_INFINITY;
    const err = await failure(driver.expand!(vol, 12 * GiB));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 200 ms waiting for EBS volume ${idOf(vol)} (volume v1) to reach 12 GiB. EC2 is still modifying it; try again later (ebs.modifyTimeout bounds this wait).`,
    );
  });

  it('passes EC2 refusals through and says which volume is gone', async () => {
    const vol = await create('v1', { size: '10' });
    ec2.failNext('modifyVolume', awsError('RequestLimitExceeded', 'Request limit exceeded.', 'ModifyVolume'));
    expect((await failure(driver.expand!(vol, 12 * GiB))).code).toBe('UNAVAILABLE');
    ec2.volumes.clear();
    const gone = await failure(driver.expand!(vol, 12 * GiB));
    expect(gone.code).toBe('NOT_FOUND');
    expect(gone.message).toBe(`EBS volume ${idOf(vol)} of volume v1 no longer exists`);
  });
});
