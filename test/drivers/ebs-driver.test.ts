import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_DEVICE_NAMES } from '../../drivers/ebs/allocator.js';
import { createToken } from '../../drivers/ebs/create-request.js';
import type { StowageError } from '../../src/base/errors.js';
import type { CreateVolumeInput } from '../../src/cloud/ec2.js';
import type { AttachRecords, Driver, ProvisionResult } from '../../src/core/driver.js';
import type { AttachmentRecord, VolumeRecord } from '../../src/state/store.js';
import type { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { until } from '../helpers/deadline.js';
import { volumeInput, volumeRecord } from '../helpers/driver-context.js';
import { failure } from '../helpers/failure.js';
import {
  AZ,
  CREATED_AT,
  type EbsSetup,
  type FakeState,
  ME,
  OTHER,
  type RecordingEc2,
  STRANGER,
  setupEbs,
} from './ebs-setup.js';

/**
 * EbsDriver against the suite's one EC2 through the real AWS SDK; the composition (endpoint,
 * block devices, recorded seam, the store's hosts and mounts) is ebs-setup.ts.
 */

let s: EbsSetup;
let dir: string;
let devDir: string;
let blockNode: string; // real path of the block device node the attached volumes "are"
let fake: FakeEc2;
let ec2: RecordingEc2;
let state: FakeState;
let logLines: Record<string, unknown>[];
let driver: Driver;

/** A new driver with `ebs` over the setup's config (a test that needs other timeouts calls it again). */
async function setup(ebs: Record<string, unknown> = {}): Promise<void> {
  ({ driver, logLines } = s.driver(ebs));
}

useTestAwsCredentials();

beforeEach(async () => {
  s = await setupEbs();
  ({ dir, devDir, blockNode, fake, ec2, state } = s);
  await setup();
});

afterEach(() => s.cleanup());

/** Provisions `name` as a Create's first attempt. */
function provision(name: string, raw: Record<string, string> = {}, createdAt = CREATED_AT) {
  return driver.provision(volumeInput(driver, name, raw, { createdAt }));
}

/** Provisions `name` and returns the record the core would keep. */
async function create(name: string, raw: Record<string, string> = {}): Promise<VolumeRecord> {
  const input = volumeInput(driver, name, raw, { createdAt: CREATED_AT });
  const res: ProvisionResult = await driver.provision(input);
  return volumeRecord('ebs', input, {
    removePolicy: res.removePolicy,
    adopted: res.adopted,
    fields: res.fields,
  });
}

function attachmentOf(vol: VolumeRecord, device: string, host = 'host-a'): AttachmentRecord {
  return { volume: vol.name, host, device, state: 'attached', updatedAt: CREATED_AT };
}

/**
 * The store's side of an attach, as the core's Attacher keeps it: the records before this attach
 * (every host's) and the device noted before AttachVolume.
 */
function records(...before: AttachmentRecord[]): AttachRecords & { noted: string[] } {
  const noted: string[] = [];
  return { before, noted, noteDevice: async (d) => void noted.push(d) };
}

/** EC2's view of a volume's live attachments. */
function attachmentsIn(id: string) {
  return (fake.volume(id)?.attachments ?? []).map((a) => ({
    instanceId: a.instanceId,
    device: a.device,
    state: a.state,
  }));
}

/** A volume made in EC2 outside stowage (someone's, to adopt), available. */
async function ec2Volume(opts: { sizeGiB?: number; type?: string; zone?: string } = {}): Promise<string> {
  const v = await ec2.sdk.createVolume({
    clientToken: `outside-${Math.random()}`,
    sizeGiB: opts.sizeGiB ?? 10,
    type: opts.type ?? 'gp3',
    ...(opts.type === 'io2' ? { iops: 1000 } : {}),
    availabilityZone: opts.zone ?? AZ,
    tags: {},
  });
  await settled(async () => ((await ec2.sdk.describeVolume(v.id))?.state === 'available' ? true : undefined));
  return v.id;
}

/** Attached by someone else with EC2's own API (aws ec2 attach-volume), and settled. */
async function attachedBySomeoneElse(id: string, instanceId: string, device: string): Promise<void> {
  await ec2.sdk.attachVolume(id, instanceId, device);
  await settled(async () =>
    (await ec2.sdk.describeVolume(id))?.attachments.some((a) => a.state === 'attached') ? true : undefined,
  );
}

/** Polls the fake EC2 until `probe` answers. */
function settled<T>(probe: () => Promise<T | undefined>): Promise<T> {
  return until('the fake EC2', probe, 3000);
}

const idOf = (vol: VolumeRecord) => vol.fields.volumeId as string;

/** What the core does to mount here: attach (the cloud's name), then find the local block device. */
async function attachHere(vol: VolumeRecord, recorded = records()): Promise<string> {
  const { device } = await driver.attach!(vol, undefined, recorded);
  return driver.localDevice!(vol, attachmentOf(vol, device));
}

const createInputs = () => ec2.callsOf('createVolume').map(([input]) => input as CreateVolumeInput);

/** What the core does when a Create fails or was interrupted: abandon the record as it stands. */
function creatingRecord(name: string, fields: Record<string, unknown>, createdAt = CREATED_AT): VolumeRecord {
  return volumeRecord('ebs', volumeInput(driver, name, {}, { createdAt }), { status: 'creating', fields });
}

/** Provision with the core's note: returns the result (or error) and what was noted on the way. */
async function provisionNoting(
  name: string,
  raw: Record<string, string> = {},
  createdAt = CREATED_AT,
): Promise<{ noted: Record<string, unknown>; result: ProvisionResult | StowageError }> {
  const input = volumeInput(driver, name, raw, { createdAt });
  const result = await driver.provision(input).catch((err: StowageError) => err);
  return { noted: input.notes, result };
}

describe('ebs provision', () => {
  it('uses a ClientToken that is stable for the same name and creation time', async () => {
    const first = await provision('v1');
    const again = await provision('v1'); // a retried or resumed Create
    const [a, b] = createInputs();
    expect(a?.clientToken).toMatch(/^[0-9a-f]{64}$/);
    expect(b?.clientToken).toBe(a?.clientToken);
    expect(again.fields.volumeId).toBe(first.fields.volumeId);
    expect(fake.volumes).toHaveLength(1);
  });

  it('uses a new ClientToken for a later Create of the same name, and for another name', async () => {
    const first = await provision('v1', {}, CREATED_AT);
    const later = await provision('v1', {}, '2024-05-02T08:00:00.000Z');
    await provision('v2', {}, CREATED_AT);
    const tokens = createInputs().map((i) => i.clientToken);
    expect(new Set(tokens).size).toBe(3);
    expect(later.fields.volumeId).not.toBe(first.fields.volumeId);
    expect(fake.volumes).toHaveLength(3);
  });

  it('asks EC2 for encryption when only kmsKeyId is given', async () => {
    await provision('v1', { kmsKeyId: 'alias/team' });
    expect(createInputs()[0]).toMatchObject({ kmsKeyId: 'alias/team', encrypted: true });
    expect(fake.volumes[0]).toMatchObject({ encrypted: true, kmsKeyId: 'alias/team' });
  });

  it('tags the volume with Name, stowage.io/volume and its create token over the user tags', async () => {
    await provision('data-1', { tags: 'team=storage,Name=mine,env=prod' });
    const token = createInputs()[0]?.clientToken;
    expect(fake.volumes[0]?.tags).toEqual({
      team: 'storage',
      env: 'prod',
      Name: 'data-1',
      'stowage.io/volume': 'data-1',
      'stowage.io/create-token': token,
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
      tags: { Name: 'v1', 'stowage.io/volume': 'v1', 'stowage.io/create-token': input?.clientToken },
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
    expect(fake.volumes[0]).toMatchObject({
      sizeGiB: 200,
      iops: 6000,
      throughput: 500,
      encrypted: true,
      kmsKeyId: 'alias/team',
      availabilityZone: 'us-east-1c',
    });
  });

  it('takes gp3 IOPS above the 16,000 once refused here (EC2 allows 80,000)', async () => {
    const res = await provision('fast', { iops: '20000', throughput: '1500' });
    expect(fake.volume(res.fields.volumeId as string)).toMatchObject({ iops: 20000, throughput: 1500 });
  });

  it.each([
    [{ availabilityZone: 'us-east-1z' }, 'availabilityZone=us-east-1z', 'InvalidZone.NotFound'],
    [{ type: 'gp2', size: '20000' }, 'size=20000 GiB', 'InvalidParameterValue'],
    [{ type: 'standard', size: '2000' }, 'size=2000 GiB', 'InvalidParameterValue'],
    [{ iops: '90000' }, 'iops=90000', 'InvalidParameterValue'],
  ])(
    'answers EC2 refusing %j as INVALID_ARGUMENT naming the value, and makes nothing',
    async (raw, named, awsCode) => {
      const { noted, result } = await provisionNoting('bad', raw);
      const err = result as StowageError;
      expect(noted.createToken).toBeNull(); // so the undo of this failed Create asks EC2 nothing
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain(named);
      expect(err.message).toMatch(/^driver ebs: EC2 refused volume bad \(/);
      expect(err.message).toContain(awsCode);
      expect(err.message).toMatch(/[^.]\. Nothing was created; correct the option and create again$/);
      expect(fake.volumes).toEqual([]);
    },
  );

  it('waits until the volume is available (through EC2 not listing it yet) and records its facts', async () => {
    const res = await provision('v1', { size: '20', type: 'gp2' });
    const id = res.fields.volumeId as string;
    // Missing for a moment (eventual consistency), then creating, then available: all waited out.
    expect(
      fake.calls.filter((c) => c.action === 'DescribeVolumes' && c.error === 'InvalidVolume.NotFound').length,
    ).toBeGreaterThan(0);
    expect(res).toEqual({
      adopted: false,
      removePolicy: 'delete',
      fields: { volumeId: id, availabilityZone: AZ, sizeGiB: 20, type: 'gp2' },
    });
    expect(fake.volume(id)?.state).toBe('available');
  });

  it('records retain when onRemove=retain is asked for a created volume', async () => {
    expect((await provision('v1', { onRemove: 'retain' })).removePolicy).toBe('retain');
  });

  it('notes the create token before CreateVolume and the volume id as soon as it answers', async () => {
    const { noted, result } = await provisionNoting('v1');
    const id = (result as ProvisionResult).fields.volumeId;
    expect(noted).toEqual({ createToken: createInputs()[0]?.clientToken, volumeId: id, madeVolume: true });
  });

  it('fails a volume that went into state error, and abandon deletes it', async () => {
    fake.failCreates();
    const { noted, result } = await provisionNoting('v1');
    const err = result as StowageError;
    const id = noted.volumeId as string;
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(`EBS volume ${id} went into state error`);
    await driver.abandon(creatingRecord('v1', noted));
    expect(ec2.callsOf('deleteVolume')).toEqual([[id]]);
    expect(fake.volume(id)?.state).toBe('deleting');
  });

  it('times out a volume that stays "creating" past createTimeout; abandon waits it out and deletes it', async () => {
    await setup({ createTimeout: '300ms' });
    fake.delays.create = 600;
    const { noted, result } = await provisionNoting('v1');
    expect((result as StowageError).code).toBe('TIMEOUT');
    expect((result as StowageError).message).toMatch(
      /^timed out after 300 ms waiting for EBS volume vol-[0-9a-f]+ to become available\.$/,
    );
    await setup({ createTimeout: '3s' });
    await driver.abandon(creatingRecord('v1', noted));
    expect(ec2.callsOf('deleteVolume')).toEqual([[noted.volumeId]]);
    expect(fake.volumes.map((v) => v.state)).toEqual(['deleting']);
  });

  it('adopts an existing volume by volumeId and retains it by default; abandon never deletes it', async () => {
    const id = await ec2Volume({ sizeGiB: 77, type: 'io2' });
    const { noted, result } = await provisionNoting('old', { volumeId: id });
    expect(result).toEqual({
      adopted: true,
      removePolicy: 'retain',
      fields: { volumeId: id, availabilityZone: AZ, sizeGiB: 77, type: 'io2' },
    });
    expect(noted).toEqual({});
    expect(ec2.callsOf('createVolume')).toEqual([]);
    // An adopting Create interrupted before it finished: Remove leaves the volume alone.
    await driver.abandon({ ...creatingRecord('old', { volumeId: id }), options: { volumeId: id } });
    expect(fake.volume(id)?.state).toBe('available');
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
  });

  it('deletes an adopted volume on Remove only when onRemove=delete was given explicitly', async () => {
    const id = await ec2Volume();
    expect((await provision('old', { volumeId: id, onRemove: 'delete' })).removePolicy).toBe('delete');
    expect((await provision('old', { volumeId: id, onRemove: 'retain' })).removePolicy).toBe('retain');
  });

  it('refuses to adopt a volume that does not exist', async () => {
    const err = await failure(provision('old', { volumeId: 'vol-0123456789abcdef0' }));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('EBS volume vol-0123456789abcdef0 does not exist in this region');
  });

  it('refuses a size below the snapshot before any CreateVolume', async () => {
    fake.addSnapshot({ snapshotId: 'snap-0123456789abcdef0', sizeGiB: 100 });
    const err = await failure(provision('v1', { snapshotId: 'snap-0123456789abcdef0', size: '50' }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(
      "driver ebs: size=50 GiB is below the snapshot's 100 GiB; give at least that, or no size",
    );
    expect(ec2.callsOf('createVolume')).toEqual([]);
  });

  it('creates from a snapshot at its own size when no size is given', async () => {
    fake.addSnapshot({ snapshotId: 'snap-0123456789abcdef0', sizeGiB: 100 });
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
    const snap = (n: number, tags: Record<string, string>, t: number) =>
      fake.addSnapshot({ snapshotId: `snap-0000000000000000${n}`, sizeGiB: 8, tags, startTime: new Date(t) });
    snap(1, { Name: 'nightly' }, 1000);
    snap(2, { Name: 'nightly' }, 3000);
    snap(3, { Name: 'weekly' }, 9000);
    snap(4, { Name: 'nightly' }, 2000);
    const res = await provision('v1', { snapshotTag: 'nightly' });
    expect(ec2.callsOf('findSnapshotByTag')).toEqual([['Name', 'nightly']]);
    expect(createInputs()[0]?.snapshotId).toBe('snap-00000000000000002');
    expect(res.fields.snapshotId).toBe('snap-00000000000000002');
  });

  it('looks at the tag named by snapshotTagName', async () => {
    fake.addSnapshot({ snapshotId: 'snap-00000000000000005', sizeGiB: 8, tags: { backup: 'db' } });
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
    fake.failNext('CreateVolume', {
      code: 'VolumeLimitExceeded',
      message: 'You have exceeded your maximum gp3 storage limit',
      status: 400,
    });
    const { noted, result } = await provisionNoting('v1');
    const err = result as StowageError;
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/^CreateVolume in us-east-1a failed: VolumeLimitExceeded: /);
    expect(fake.volumes).toEqual([]);
    // EC2 said no: nothing to look for, so the undo of this failed Create asks EC2 nothing.
    expect(noted.createToken).toBeNull();
    const before = ec2.calls.length;
    await driver.abandon(creatingRecord('v1', noted, new Date().toISOString()));
    expect(ec2.calls.length).toBe(before);
  });

  it('keeps the token noted when CreateVolume got no clear answer, and abandon then finds the volume by it', async () => {
    fake.failNext('CreateVolume', { code: 'InternalError', message: 'An internal error has occurred' });
    const { noted, result } = await provisionNoting('v1');
    expect((result as StowageError).code).toBe('UNAVAILABLE');
    expect(typeof noted.createToken).toBe('string');
    await driver.abandon(creatingRecord('v1', noted)); // looks by the token tag, finds nothing
    expect(ec2.callsOf('findVolumesByTag')).toEqual([['stowage.io/create-token', noted.createToken]]);
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
  });
});

describe('ebs abandon (an interrupted Create, SIGKILL at any point)', () => {
  it('does nothing, and asks EC2 nothing, when CreateVolume was never called', async () => {
    await driver.abandon(creatingRecord('v1', {}));
    expect(ec2.calls).toEqual([]);
  });

  it('finds and deletes the volume of a Create killed between CreateVolume and noting its id', async () => {
    const { noted } = await provisionNoting('v1');
    const id = noted.volumeId as string;
    // As the store had it when the daemon died: the token noted, the volume id not yet.
    await driver.abandon(creatingRecord('v1', { createToken: noted.createToken }));
    expect(ec2.callsOf('findVolumesByTag')).toEqual([['stowage.io/create-token', noted.createToken]]);
    expect(ec2.callsOf('deleteVolume')).toEqual([[id]]);
  });

  it('waits through EC2 not listing a just-made volume yet (eventual consistency) before deciding', async () => {
    fake.consistencyDelayMs = 400;
    const createdAt = new Date().toISOString();
    const parsed = driver.parseOptions({});
    const token = createToken('v1', createdAt);
    // Killed right after CreateVolume answered: EC2 made it, nobody noted its id.
    await ec2.sdk.createVolume({
      clientToken: token,
      type: 'gp3',
      sizeGiB: 1,
      availabilityZone: AZ,
      tags: { 'stowage.io/create-token': token },
    });
    expect(await ec2.sdk.findVolumesByTag('stowage.io/create-token', token)).toEqual([]);
    await driver.abandon({
      ...creatingRecord('v1', { createToken: token }, createdAt),
      options: parsed.values,
    });
    expect(ec2.callsOf('deleteVolume')).toHaveLength(1);
    expect(fake.volumes.map((v) => v.state)).toEqual(['deleting']);
  });

  it('deletes the noted volume, even while it is still creating', async () => {
    fake.delays.create = 300;
    const createdAt = new Date().toISOString();
    const v = await ec2.sdk.createVolume({
      clientToken: createToken('v1', createdAt),
      type: 'gp3',
      sizeGiB: 1,
      availabilityZone: AZ,
      tags: {},
    });
    await driver.abandon(
      creatingRecord(
        'v1',
        { createToken: createToken('v1', createdAt), volumeId: v.id, madeVolume: true },
        createdAt,
      ),
    );
    expect(ec2.callsOf('deleteVolume')).toEqual([[v.id]]);
  });

  it('treats a noted volume that is already gone as done (a Remove run twice)', async () => {
    const { noted } = await provisionNoting('v1');
    fake.vanish(noted.volumeId as string);
    await driver.abandon(creatingRecord('v1', noted));
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
  });

  it('refuses to delete a volume that is attached, and says what to do', async () => {
    const { noted } = await provisionNoting('v1');
    const id = noted.volumeId as string;
    fake.attachElsewhere(id, STRANGER);
    const err = await failure(driver.abandon(creatingRecord('v1', noted)));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `EBS volume ${id}, made by the interrupted Create of v1, is attached to ${STRANGER}; nothing was deleted: detach it, then remove v1 again`,
    );
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
  });

  it('a resumed Create gets the same EBS volume', async () => {
    const first = await provisionNoting('v1');
    const resumed = await provisionNoting('v1');
    expect((resumed.result as ProvisionResult).fields.volumeId).toBe(first.noted.volumeId);
    expect(fake.volumes).toHaveLength(1);
  });

  it('a Create whose earlier attempt was deleted says so and to create again', async () => {
    const { noted } = await provisionNoting('v1');
    await driver.abandon(creatingRecord('v1', noted));
    const again = await failure(provision('v1'));
    expect(again.code).toBe('CONFLICT');
    expect(again.message).toBe(
      `an earlier attempt of this Create made EBS volume ${noted.volumeId}, which is deleting now; create volume v1 again (a new Create makes a new EBS volume)`,
    );
  });
});

describe('ebs attach', () => {
  it('attaches as /dev/xvdf, noting the name first, and waits for the block device that appears after "attached"', async () => {
    const vol = await create('v1');
    const recorded = records();
    const { device } = await driver.attach!(vol, undefined, recorded);
    expect(device).toBe('/dev/xvdf');
    expect(recorded.noted).toEqual(['/dev/xvdf']);
    expect(attachmentsIn(idOf(vol))).toEqual([{ instanceId: ME, device: '/dev/xvdf', state: 'attached' }]);
    // EC2 says attached; the disk is not in the instance yet: localDevice waits for it.
    expect(await readlink(join(devDir, 'xvdf')).catch(() => 'not yet')).toBe('not yet');
    expect(await driver.localDevice!(vol, attachmentOf(vol, device))).toBe(blockNode);
    expect(ec2.callsOf('attachVolume')).toEqual([[idOf(vol), ME, '/dev/xvdf']]);
  });

  it('skips the names the instance already uses, in either spelling', async () => {
    fake.addInstance({
      instanceId: ME,
      availabilityZone: AZ,
      usedDevices: ['/dev/sda1', '/dev/sdf', '/dev/xvdg'],
    });
    const vol = await create('v1');
    await driver.attach!(vol, undefined, records());
    expect(ec2.callsOf('attachVolume')).toEqual([[idOf(vol), ME, '/dev/xvdh']]);
  });

  it('gives a second volume the next name', async () => {
    const a = await create('a');
    const b = await create('b');
    await driver.attach!(a, undefined, records());
    await driver.attach!(b, undefined, records());
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdg']);
  });

  const nameTaken = (n: string) => ({
    code: 'InvalidParameterValue',
    message: `Invalid value '${n}' for unixDevice. Attachment point ${n} is already in use`,
  });

  it('taints a name EC2 rejects as already in use and succeeds with the next', async () => {
    fake.failNext('AttachVolume', nameTaken('/dev/xvdf'));
    const a = await create('a');
    expect(await attachHere(a)).toBe(blockNode);
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdg']);
    // /dev/xvdf is never tried again on this instance, even once EC2 would take it.
    const b = await create('b');
    await driver.attach!(b, undefined, records());
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdg', '/dev/xvdh']);
  });

  it('gives up after three names in use', async () => {
    for (const n of ['/dev/xvdf', '/dev/xvdg', '/dev/xvdh']) fake.failNext('AttachVolume', nameTaken(n));
    const vol = await create('v1');
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(`could not find a free device name on ${ME} after 3 tries`);
    expect(attachmentsIn(idOf(vol))).toEqual([]);
  });

  it('says so when the instance has no free name left', async () => {
    fake.addInstance({
      instanceId: ME,
      availabilityZone: AZ,
      usedDevices: ['/dev/xvda', ...DEFAULT_DEVICE_NAMES],
    });
    const vol = await create('v1');
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(`no free device name left on ${ME} (all in use or tainted by failed attaches)`);
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('releases the name after another AttachVolume failure', async () => {
    const vol = await create('v1');
    fake.failNext('AttachVolume', {
      code: 'UnauthorizedOperation',
      message: 'You are not authorized to perform this operation.',
    });
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.code).toBe('PERMISSION_DENIED');
    await driver.attach!(vol, undefined, records(attachmentOf(vol, '/dev/xvdf')));
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdf']);
  });

  it('times out a stuck "attaching", taints the name and force-detaches', async () => {
    await setup({ attachTimeout: '300ms' });
    const vol = await create('v1');
    fake.stickAttaching(idOf(vol));
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 300 ms waiting for EBS volume ${idOf(vol)} to attach to ${ME} as /dev/xvdf.`,
    );
    expect(ec2.callsOf('detachVolume')).toEqual([[idOf(vol), ME, { force: true }]]);
    // EC2 lets go of it; the next attach avoids the tainted name.
    fake.stickAttaching(idOf(vol), false);
    await settled(async () => (attachmentsIn(idOf(vol)).length === 0 ? true : undefined));
    expect(await attachHere(vol)).toBe(blockNode);
    expect(ec2.callsOf('attachVolume').map((c) => c[2])).toEqual(['/dev/xvdf', '/dev/xvdg']);
  });

  it('times out when the block device never appears on the host', async () => {
    fake.addInstance({ instanceId: ME, availabilityZone: AZ, blockDevices: false });
    const vol = await create('v1');
    const err = await failure(attachHere(vol));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 300 ms waiting for the block device of ${idOf(vol)} (attached as /dev/xvdf) to appear. ` +
        'Neither the requested name nor an NVMe device with its serial showed up.',
    );
  });

  it('finds the volume as an NVMe disk (Nitro: /dev/nvme1n1 and its by-id link)', async () => {
    fake.addInstance({ instanceId: ME, availabilityZone: AZ, naming: 'nvme' });
    const vol = await create('v1');
    expect(await attachHere(vol)).toBe(blockNode);
    const byId = join(dir, 'by-id', `nvme-Amazon_Elastic_Block_Store_${idOf(vol).replace('-', '')}`);
    expect(await readlink(byId)).toBe(join(devDir, 'nvme1n1'));
    expect(await readlink(join(devDir, 'xvdf')).catch(() => 'absent')).toBe('absent');
  });

  it('finds a Xen disk attached as /dev/sdf under /dev/xvdf', async () => {
    fake.addInstance({ instanceId: ME, availabilityZone: AZ, naming: 'xen' });
    const vol = await create('v1');
    // Made by stowage under the sd spelling (an earlier version, say): recorded so.
    await attachedBySomeoneElse(idOf(vol), ME, '/dev/sdf');
    expect(await attachHere(vol, records(attachmentOf(vol, '/dev/sdf')))).toBe(blockNode);
    expect(await readlink(join(devDir, 'xvdf'))).toBe(blockNode);
    expect(await readlink(join(devDir, 'sdf')).catch(() => 'absent')).toBe('absent');
  });

  it('is idempotent: a volume stowage already attached here is not attached again', async () => {
    const vol = await create('v1');
    const { device } = await driver.attach!(vol, undefined, records());
    expect(await attachHere(vol, records(attachmentOf(vol, device)))).toBe(blockNode);
    expect(ec2.callsOf('attachVolume')).toHaveLength(1);
  });

  it('waits for an attachment of its own here that is still attaching (an attach interrupted after AttachVolume)', async () => {
    const vol = await create('v1');
    fake.delays.attach = 200;
    await ec2.sdk.attachVolume(idOf(vol), ME, '/dev/xvdk');
    const recorded = { ...attachmentOf(vol, '/dev/xvdk'), state: 'attaching' as const };
    expect(await attachHere(vol, records(recorded))).toBe(blockNode);
    expect(ec2.callsOf('attachVolume')).toEqual([]);
    expect(await readlink(join(devDir, 'xvdk'))).toBe(blockNode);
  });

  it('refuses a volume in another zone', async () => {
    const id = await ec2Volume({ zone: 'us-east-1b' });
    const vol = await create('far', { volumeId: id });
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(
      `volume far (${id}) is in us-east-1b but this host is in us-east-1a; EBS volumes attach only in their own zone`,
    );
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('says which EBS volume is gone', async () => {
    const vol = await create('v1');
    fake.vanish(idOf(vol));
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(`EBS volume ${idOf(vol)} of volume v1 no longer exists`);
  });

  it('refuses a record without an EBS volume id', async () => {
    const vol = await create('v1');
    const err = await failure(driver.attach!({ ...vol, fields: {} }, undefined, records()));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe('volume v1 has no EBS volume id recorded');
  });
});

describe('ebs: an attachment stowage did not make is never used nor detached (issue 12, defect 3)', () => {
  const notOurs = (id: string, instance: string, where: string, device: string) =>
    `volume v1 (EBS ${id}) is attached to instance ${instance}${where} as ${device}, and stowage did not attach it ` +
    '(the store records no such attachment): stowage never uses or detaches an attachment it did not make. ' +
    'To hand the volume to stowage, stop what uses it there, unmount it and detach it yourself ' +
    `(aws ec2 detach-volume --volume-id ${id} --instance-id ${instance}), then try again: stowage then attaches it itself`;

  it('refuses a volume someone attached to this instance, naming the instance and the device', async () => {
    const vol = await create('v1');
    await attachedBySomeoneElse(idOf(vol), ME, '/dev/xvdm');
    const err = await failure(attachHere(vol));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(notOurs(idOf(vol), ME, ' (this host)', '/dev/xvdm'));
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('refuses it when the record names no device (an attach of ours that never reached EC2) or another one', async () => {
    const vol = await create('v1');
    await attachedBySomeoneElse(idOf(vol), ME, '/dev/xvdm');
    const unnamed = { ...attachmentOf(vol, ''), state: 'attaching' as const };
    expect((await failure(attachHere(vol, records(unnamed)))).code).toBe('IN_USE');
    expect((await failure(attachHere(vol, records(attachmentOf(vol, '/dev/xvdf'))))).code).toBe('IN_USE');
  });

  it('never detaches it: the teardown after the refusal, reconcile, and a forced detach leave it attached', async () => {
    const vol = await create('v1');
    await attachedBySomeoneElse(idOf(vol), ME, '/dev/xvdm');
    // The records the core has in those paths: an attach that never got a name, or another name.
    await driver.detach!(vol, { ...attachmentOf(vol, ''), state: 'attaching' });
    await driver.detach!(vol, attachmentOf(vol, '/dev/xvdf'), undefined, { force: true });
    expect(ec2.callsOf('detachVolume')).toEqual([]);
    expect(attachmentsIn(idOf(vol))).toEqual([{ instanceId: ME, device: '/dev/xvdm', state: 'attached' }]);
    expect(logLines).toContainEqual(
      expect.objectContaining({
        level: 40,
        volumeId: idOf(vol),
        device: '/dev/xvdm',
        msg: 'EBS attachment not made by stowage: left attached, only the record dropped',
      }),
    );
  });

  it('is handed over deliberately: once its owner detaches it, stowage attaches it itself', async () => {
    const vol = await create('v1');
    await attachedBySomeoneElse(idOf(vol), ME, '/dev/xvdm');
    expect((await failure(attachHere(vol))).code).toBe('IN_USE');
    await ec2.sdk.detachVolume(idOf(vol), ME); // what the refusal tells the user to do
    await settled(async () => (attachmentsIn(idOf(vol)).length === 0 ? true : undefined));
    expect(await attachHere(vol)).toBe(blockNode);
    expect(attachmentsIn(idOf(vol))).toEqual([{ instanceId: ME, device: '/dev/xvdf', state: 'attached' }]);
  });

  it("preempt never force-detaches another host's attachment the store does not record as stowage's", async () => {
    const vol = await create('v1', { preempt: 'true' });
    fake.attachElsewhere(idOf(vol), OTHER, '/dev/xvdf');
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(notOurs(idOf(vol), OTHER, ' (host host-b)', '/dev/xvdf'));
    expect(ec2.callsOf('detachVolume')).toEqual([]);
  });
});

describe('ebs attach of a volume attached to another instance', () => {
  const onB = (vol: VolumeRecord) => records(attachmentOf(vol, '/dev/xvdf', 'host-b'));

  it('refuses without preempt and says how many mounts the other host has', async () => {
    const vol = await create('v1');
    fake.attachElsewhere(idOf(vol), OTHER, '/dev/xvdf');
    state.mount('v1', 'host-b', { [`${'a'.repeat(64)}`]: 1, [`${'b'.repeat(64)}`]: 1 });
    state.mount('v1', 'host-c', { [`${'c'.repeat(64)}`]: 3 }); // not the host that holds it
    const err = await failure(driver.attach!(vol, undefined, onB(vol)));
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
    fake.attachElsewhere(idOf(vol), OTHER, '/dev/xvdf');
    const err = await failure(driver.attach!(vol, undefined, onB(vol)));
    expect(err.message).toBe(
      `volume v1 is attached to instance ${OTHER} (host host-b) with 0 active mounts; ` +
        'release it there, or create the volume with preempt=true to take it over',
    );
    expect(ec2.callsOf('detachVolume')).toEqual([]);
  });

  it('refuses with preempt while the store shows mounts on that host', async () => {
    const vol = await create('v1', { preempt: 'true' });
    fake.attachElsewhere(idOf(vol), OTHER, '/dev/xvdf');
    state.mount('v1', 'host-b', { [`${'a'.repeat(64)}`]: 1 });
    const err = await failure(driver.attach!(vol, undefined, onB(vol)));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `volume v1 is attached to instance ${OTHER} (host host-b) with 1 active mount; ` +
        'preempt takes a volume only when nobody uses it',
    );
    expect(ec2.callsOf('detachVolume')).toEqual([]);
    expect(attachmentsIn(idOf(vol))).toEqual([{ instanceId: OTHER, device: '/dev/xvdf', state: 'attached' }]);
  });

  it('refuses with preempt when the other instance is not a stowage host', async () => {
    const vol = await create('v1', { preempt: 'true' });
    fake.attachElsewhere(idOf(vol), STRANGER, '/dev/xvdf');
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `volume v1 is attached to instance ${STRANGER} (not a stowage host); ` +
        'nothing proves it is unused there, so it is not force-detached',
    );
    expect(ec2.callsOf('detachVolume')).toEqual([]);
  });

  it('refuses without preempt when the other instance is not a stowage host', async () => {
    const vol = await create('v1');
    fake.attachElsewhere(idOf(vol), STRANGER, '/dev/xvdf');
    const err = await failure(driver.attach!(vol, undefined, records()));
    expect(err.message).toBe(
      `volume v1 is attached to instance ${STRANGER} (not a stowage host); ` +
        'release it there, or create the volume with preempt=true to take it over',
    );
  });

  it('force-detaches and attaches here with preempt when that host has no mounts', async () => {
    const vol = await create('v1', { preempt: 'true' });
    fake.attachElsewhere(idOf(vol), OTHER, '/dev/xvdf');
    state.mount('other-volume', 'host-b', { [`${'a'.repeat(64)}`]: 1 }); // another volume's mount
    state.mount('v1', 'host-b', {}); // a teardown that has not finished: no users
    expect(await attachHere(vol, onB(vol))).toBe(blockNode);
    expect(ec2.callsOf('detachVolume')).toEqual([[idOf(vol), OTHER, { force: true }]]);
    expect(ec2.callsOf('attachVolume')).toEqual([[idOf(vol), ME, '/dev/xvdf']]);
    expect(attachmentsIn(idOf(vol))).toEqual([{ instanceId: ME, device: '/dev/xvdf', state: 'attached' }]);
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
    expect(await driver.attach!(vol, hostB, records())).toEqual({ device: '/dev/xvdf' });
    expect(ec2.callsOf('attachVolume')).toEqual([[idOf(vol), OTHER, '/dev/xvdf']]);
    expect(attachmentsIn(idOf(vol))).toEqual([{ instanceId: OTHER, device: '/dev/xvdf', state: 'attached' }]);
    // Attached again (a retry, the store recording it now): the same name, no second AttachVolume.
    const again = records(attachmentOf(vol, '/dev/xvdf', 'host-b'));
    expect(await driver.attach!(vol, hostB, again)).toEqual({ device: '/dev/xvdf' });
    expect(ec2.callsOf('attachVolume')).toHaveLength(1);
  });

  it("asks EC2 for the zone when the host's identity lacks it, and refuses another zone", async () => {
    const vol = await create('v1');
    fake.removeInstance(OTHER);
    fake.addInstance({ instanceId: OTHER, availabilityZone: 'us-east-1c' });
    const err = await failure(
      driver.attach!(vol, { host: 'host-b', identity: { instanceId: OTHER } }, records()),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(
      `volume v1 (${idOf(vol)}) is in ${AZ} but host host-b (${OTHER}) is in us-east-1c; EBS volumes attach only in their own zone`,
    );
    expect(ec2.callsOf('attachVolume')).toEqual([]);
  });

  it('refuses a host that never recorded an instance id, and names what to do', async () => {
    const vol = await create('v1');
    const err = await failure(driver.attach!(vol, { host: 'node-7', identity: {} }, records()));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(
      'host node-7 has no EC2 instance id recorded; run stowage on it once (daemon or hosts register) so it registers itself',
    );
  });

  it("detaches from the host's instance, not from this one", async () => {
    const vol = await create('v1');
    await driver.attach!(vol, hostB, records());
    await driver.detach!(vol, attachmentOf(vol, '/dev/xvdf', 'host-b'), hostB);
    expect(ec2.callsOf('detachVolume')).toEqual([[idOf(vol), OTHER]]);
    expect(attachmentsIn(idOf(vol))).toEqual([]);
  });
});

describe('ebs detach', () => {
  it('detaches from this instance and waits until EC2 has let go', async () => {
    const vol = await create('v1');
    const { device } = await driver.attach!(vol, undefined, records());
    await driver.detach!(vol, attachmentOf(vol, device));
    expect(ec2.callsOf('detachVolume')).toEqual([[idOf(vol), ME]]);
    expect(fake.volume(idOf(vol))).toMatchObject({ state: 'available', attachments: [] });
  });

  it('waits while EC2 shows the detach busy (the device still mounted), and goes on once it is let go', async () => {
    const vol = await create('v1');
    const device = await attachHere(vol);
    expect(device).toBe(blockNode);
    fake.holdDevice(idOf(vol));
    const detached = driver.detach!(vol, attachmentOf(vol, '/dev/xvdf'));
    await settled(async () => (attachmentsIn(idOf(vol))[0]?.state === 'busy' ? true : undefined));
    fake.holdDevice(idOf(vol), false);
    await detached;
    expect(attachmentsIn(idOf(vol))).toEqual([]);
  });

  it('gives up on a detach that stays busy at attachTimeout, saying why; force (a gone host) is honoured', async () => {
    await setup({ attachTimeout: '300ms' });
    const vol = await create('v1');
    await attachHere(vol);
    fake.holdDevice(idOf(vol));
    const err = await failure(driver.detach!(vol, attachmentOf(vol, '/dev/xvdf')));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 300 ms waiting for EBS volume ${idOf(vol)} to detach from ${ME}. ` +
        'EC2 still shows the attachment; when it stays busy, something on that instance still has the device mounted or open.',
    );
    await driver.detach!(vol, attachmentOf(vol, '/dev/xvdf'), undefined, { force: true });
    expect(ec2.callsOf('detachVolume')).toEqual([
      [idOf(vol), ME],
      [idOf(vol), ME, { force: true }],
    ]);
    expect(attachmentsIn(idOf(vol))).toEqual([]);
  });

  it('does nothing for a volume that is not attached here', async () => {
    const vol = await create('v1');
    fake.attachElsewhere(idOf(vol), OTHER, '/dev/xvdf');
    await driver.detach!(vol, attachmentOf(vol, '/dev/xvdf'));
    expect(ec2.callsOf('detachVolume')).toEqual([]);
    expect(attachmentsIn(idOf(vol))).toHaveLength(1);
  });

  it('treats a volume that is gone as detached', async () => {
    const vol = await create('v1');
    fake.vanish(idOf(vol));
    await driver.detach!(vol, attachmentOf(vol, '/dev/xvdf'));
    expect(ec2.callsOf('detachVolume')).toEqual([]);
  });
});

describe('ebs destroy', () => {
  it('refuses while the volume is attached and deletes nothing', async () => {
    const vol = await create('v1');
    fake.attachElsewhere(idOf(vol), OTHER, '/dev/xvdf');
    const err = await failure(driver.destroy(vol));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(`EBS volume ${idOf(vol)} is still attached to ${OTHER}; nothing was deleted`);
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
    expect(fake.volume(idOf(vol))?.state).toBe('in-use');
  });

  it('deletes a detached volume', async () => {
    const vol = await create('v1');
    const { device } = await driver.attach!(vol, undefined, records());
    await driver.detach!(vol, attachmentOf(vol, device));
    await driver.destroy(vol);
    expect(ec2.callsOf('deleteVolume')).toEqual([[idOf(vol)]]);
    expect(fake.volume(idOf(vol))?.state).toBe('deleting');
  });

  it('treats a volume that is already gone as destroyed', async () => {
    const vol = await create('v1');
    fake.vanish(idOf(vol));
    await driver.destroy(vol);
    expect(ec2.callsOf('deleteVolume')).toEqual([]);
  });

  it('treats a volume EC2 is still deleting as destroyed (a Remove run again)', async () => {
    const vol = await create('v1');
    await driver.destroy(vol);
    expect(fake.volume(idOf(vol))?.state).toBe('deleting');
    await driver.destroy(vol);
    expect(ec2.callsOf('deleteVolume')).toEqual([[idOf(vol)]]);
  });

  it('keeps the volume under retain without asking EC2', async () => {
    const vol = await create('v1', { onRemove: 'retain' });
    const before = ec2.calls.length;
    await driver.destroy(vol);
    expect(ec2.calls.length).toBe(before);
    expect(fake.volume(idOf(vol))?.state).toBe('available');
    expect(logLines).toContainEqual(expect.objectContaining({ volumeId: idOf(vol), msg: 'EBS volume kept' }));
  });

  it('keeps an adopted volume', async () => {
    const id = await ec2Volume();
    const vol = await create('old', { volumeId: id });
    await driver.destroy(vol);
    expect(fake.volume(id)?.state).toBe('available');
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
    fake.removeInstance(ME);
    const [, api] = await driver.doctor!();
    expect(api).toEqual({ name: 'ebs: EC2 API', ok: false, detail: `EC2 does not know instance ${ME}` });
  });
});

describe('ebs expand', () => {
  const GiB = 1024 ** 3;

  it('grows to the requested size rounded up to whole GiB, waits for "optimizing" and records it', async () => {
    const vol = await create('v1', { size: '10' });
    fake.delays.modify = 100;
    fake.delays.optimize = 10_000;
    const res = await driver.expand!(vol, 10 * GiB + 1);
    expect(ec2.callsOf('modifyVolume')).toEqual([[idOf(vol), 11]]);
    expect(res).toEqual({ sizeBytes: 11 * GiB, fields: { ...vol.fields, sizeGiB: 11 } });
    expect(fake.volume(idOf(vol))?.modification?.state).toBe('optimizing');
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
    fake.delays.modify = 200;
    fake.delays.optimize = 10_000;
    await ec2.sdk.modifyVolume(idOf(vol), 20); // an earlier call whose reply was lost
    const res = await driver.expand!(vol, 20 * GiB);
    expect(res.sizeBytes).toBe(20 * GiB);
    expect(ec2.callsOf('modifyVolume')).toEqual([]);
    expect(fake.volume(idOf(vol))?.modification?.state).toBe('optimizing');
  });

  it("reports a failed modification with EC2's message", async () => {
    const vol = await create('v1', { size: '10' });
    fake.failModifications('Volume modification failed: internal error');
    const err = await failure(driver.expand!(vol, 12 * GiB));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(
      `EC2 could not grow ${idOf(vol)} (volume v1) to 12 GiB: Volume modification failed: internal error`,
    );
  });

  it('gives up at modifyTimeout while EC2 is still modifying, and says so', async () => {
    await setup({ modifyTimeout: '200ms' });
    const vol = await create('v1', { size: '10' });
    fake.delays.modify = 60_000;
    const err = await failure(driver.expand!(vol, 12 * GiB));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 200 ms waiting for EBS volume ${idOf(vol)} (volume v1) to reach 12 GiB. EC2 is still modifying it; try again later (ebs.modifyTimeout bounds this wait).`,
    );
  });

  it('passes EC2 refusals through and says which volume is gone', async () => {
    const vol = await create('v1', { size: '10' });
    fake.failNext('ModifyVolume', { code: 'RequestLimitExceeded', message: 'Request limit exceeded.' });
    expect((await failure(driver.expand!(vol, 12 * GiB))).code).toBe('UNAVAILABLE');
    fake.vanish(idOf(vol));
    const gone = await failure(driver.expand!(vol, 12 * GiB));
    expect(gone.code).toBe('NOT_FOUND');
    expect(gone.message).toBe(`EBS volume ${idOf(vol)} of volume v1 no longer exists`);
  });
});
