import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EbsCloud } from '../../drivers/ebs/cloud.js';
import { type CreateVolumeInput, SdkEc2 } from '../../src/cloud/ec2.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { fakeEndpointOptions } from '../helpers/aws-sdk.js';
import { until } from '../helpers/deadline.js';
import { failure } from '../helpers/failure.js';
import { AZ, ME, OTHER } from './ebs-setup.js';

/**
 * EbsCloud, the EBS driver's EC2 operations with their waits, against the suite's one EC2 through
 * the real SDK: each operation's typed outcomes, and its deadline. The driver's policy on top of
 * these outcomes is pinned by ebs-driver.test.ts.
 */

const LONG = 5000;

let fake: FakeEc2;
let sdk: SdkEc2;
let cloud: EbsCloud;

useTestAwsCredentials();

beforeEach(async () => {
  fake = await FakeEc2.start({ stateDelayMs: 20, consistencyDelayMs: 60 });
  fake.addInstance({ instanceId: ME, availabilityZone: AZ, blockDevices: false });
  fake.addInstance({ instanceId: OTHER, availabilityZone: AZ, blockDevices: false });
  sdk = new SdkEc2(fakeEndpointOptions(fake.url));
  cloud = new EbsCloud(sdk);
});

afterEach(async () => {
  await fake.stop();
  expect(fake.errors).toEqual([]);
});

const request = (token: string, az = AZ): CreateVolumeInput => ({
  clientToken: token,
  type: 'gp3',
  sizeGiB: 10,
  availabilityZone: az,
  tags: { Name: token },
});

/** An available volume, made through the cloud layer. */
async function available(token = `t-${Math.random()}`): Promise<string> {
  const out = await cloud.create(request(token), LONG, async () => undefined);
  if (out.kind !== 'available') throw new Error(`not available: ${out.kind}`);
  return out.volume.id;
}

async function attached(id: string, instanceId = ME, device = '/dev/xvdf'): Promise<void> {
  expect(await cloud.attach(id, instanceId, device, LONG)).toEqual({ kind: 'attached' });
}

const liveAttachments = (id: string) =>
  (fake.volume(id)?.attachments ?? []).filter((a) => a.state !== 'detached').map((a) => a.instanceId);

describe('create', () => {
  it('notes the id before waiting, then answers the volume once available (missing from reads at first)', async () => {
    const made: string[] = [];
    const out = await cloud.create(request('tok-1'), LONG, async (id) => void made.push(id));
    expect(out.kind).toBe('available');
    if (out.kind !== 'available') return;
    expect(made).toEqual([out.volume.id]);
    expect(out.volume).toMatchObject({ state: 'available', sizeGiB: 10, availabilityZone: AZ });
  });

  it("answers refused for EC2's outright no, and makes nothing", async () => {
    const made: string[] = [];
    const out = await cloud.create(request('tok-2', 'us-east-1z'), LONG, async (id) => void made.push(id));
    expect(out.kind).toBe('refused');
    if (out.kind !== 'refused') return;
    expect(out.error.code).toBe('INVALID_ARGUMENT');
    expect(out.error.message).toContain('InvalidZone.NotFound');
    expect(made).toEqual([]);
    expect(fake.volumes).toEqual([]);
  });

  it('throws what may have made a volume (a server error), without answering refused', async () => {
    fake.failNext('CreateVolume', { code: 'InternalError', status: 500 });
    const err = await failure(cloud.create(request('tok-3'), LONG, async () => undefined));
    expect(err.code).toBe('UNAVAILABLE');
  });

  it('answers token-spent when the token made a volume that was deleted since', async () => {
    const id = await available('tok-4');
    await sdk.deleteVolume(id);
    const made: string[] = [];
    const out = await cloud.create(request('tok-4'), LONG, async (x) => void made.push(x));
    expect(out).toMatchObject({ kind: 'token-spent', id });
    expect(['deleting', 'deleted']).toContain(out.kind === 'token-spent' ? out.state : '');
    expect(made).toEqual([id]);
  });

  it('throws UNAVAILABLE when the volume goes into state error', async () => {
    fake.failCreates(1);
    const err = await failure(cloud.create(request('tok-5'), LONG, async () => undefined));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/^EBS volume vol-[0-9a-f]+ went into state error$/);
  });
});

describe('finding what a Create made', () => {
  it('finds the volume by its tag, and answers undefined at once when the window has passed', async () => {
    const id = await available('tok-6');
    expect((await cloud.findCreated('Name', 'tok-6', Date.now()))?.id).toBe(id);
    expect(await cloud.findCreated('Name', 'nobody', 0)).toBeUndefined();
    expect((await cloud.describeCreated(id, Date.now(), LONG, 'x'))?.state).toBe('available');
  });
});

describe('attach', () => {
  it('attaches and waits until attached', async () => {
    const id = await available();
    await attached(id);
    expect(fake.volume(id)?.attachments.map((a) => [a.instanceId, a.device, a.state])).toEqual([
      [ME, '/dev/xvdf', 'attached'],
    ]);
  });

  it('answers device-name-in-use for a name the instance already uses', async () => {
    const id = await available();
    expect(await cloud.attach(id, ME, '/dev/xvda', LONG)).toEqual({ kind: 'device-name-in-use' });
    expect(liveAttachments(id)).toEqual([]);
  });

  it('answers refused with the error for any other refusal', async () => {
    const id = await available();
    await attached(id, OTHER);
    const out = await cloud.attach(id, ME, '/dev/xvdg', LONG);
    expect(out.kind).toBe('refused');
    expect(out.kind === 'refused' && (out.error as Error).message).toContain('VolumeInUse');
  });

  it('answers stuck at the deadline, and force-detaches what stayed attaching', async () => {
    const id = await available();
    fake.stickAttaching(id);
    const out = await cloud.attach(id, ME, '/dev/xvdf', 300);
    expect(out.kind).toBe('stuck');
    expect(out.kind === 'stuck' && (out.error as Error).message).toBe(
      `timed out after 300 ms waiting for EBS volume ${id} to attach to ${ME} as /dev/xvdf.`,
    );
    await until('the forced detach', async () => (liveAttachments(id).length === 0 ? true : undefined), 3000);
  });
});

describe('detach', () => {
  it('detaches and waits until EC2 no longer shows the attachment', async () => {
    const id = await available();
    await attached(id);
    expect(await cloud.detach(id, ME, { timeoutMs: LONG })).toEqual({ kind: 'detached' });
    expect(liveAttachments(id)).toEqual([]);
  });

  it('gives up on a detach that stays busy, saying what holds it; force gets through', async () => {
    const id = await available();
    await attached(id);
    fake.holdDevice(id);
    const err = await failure(cloud.detach(id, ME, { timeoutMs: 300 }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      `timed out after 300 ms waiting for EBS volume ${id} to detach from ${ME}. ` +
        'EC2 still shows the attachment; when it stays busy, something on that instance still has the device mounted or open.',
    );
    expect(await cloud.detach(id, ME, { force: true, timeoutMs: LONG })).toEqual({ kind: 'detached' });
  });

  it('answers volume-gone when the volume disappears meanwhile', async () => {
    const id = await available();
    fake.vanish(id);
    expect(await cloud.detach(id, ME, { timeoutMs: LONG })).toEqual({ kind: 'volume-gone' });
  });
});

describe('deleteUnattached', () => {
  it('deletes a volume no instance holds, and refuses (deleting nothing) one that is attached', async () => {
    const id = await available();
    await attached(id);
    const v = await sdk.describeVolume(id);
    expect(await cloud.deleteUnattached(v!)).toEqual({ kind: 'attached', instanceIds: [ME] });
    expect(fake.volume(id)?.state).toBe('in-use');
    await cloud.detach(id, ME, { timeoutMs: LONG });
    expect(await cloud.deleteUnattached((await sdk.describeVolume(id))!)).toEqual({ kind: 'deleted' });
    expect(['deleting', 'deleted']).toContain(fake.volume(id)?.state);
  });
});

describe('grow', () => {
  it('grows a smaller volume and answers both sizes; leaves one that is big enough alone', async () => {
    const id = await available();
    expect(await cloud.grow(id, 12, 'volume v1', LONG)).toEqual({ kind: 'sized', fromGiB: 10, sizeGiB: 12 });
    const before = fake.calls.filter((c) => c.action === 'ModifyVolume').length;
    expect(await cloud.grow(id, 11, 'volume v1', LONG)).toEqual({ kind: 'sized', fromGiB: 12, sizeGiB: 12 });
    expect(fake.calls.filter((c) => c.action === 'ModifyVolume')).toHaveLength(before);
  });

  it('answers volume-gone for a volume EC2 no longer knows', async () => {
    const id = await available();
    fake.vanish(id);
    expect(await cloud.grow(id, 12, 'volume v1', LONG)).toEqual({ kind: 'volume-gone' });
  });

  it('says what failed when EC2 cannot grow it', async () => {
    const id = await available();
    fake.failModifications('no capacity');
    const err = await failure(cloud.grow(id, 12, 'volume v1', LONG));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(`EC2 could not grow ${id} (volume v1) to 12 GiB: no capacity`);
  });
});
