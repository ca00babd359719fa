import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createToken } from '../../drivers/ebs/create-request.js';
import { registerBuiltins } from '../../drivers/index.js';
import { pollUntil } from '../../src/base/backoff.js';
import { StowageError } from '../../src/base/errors.js';
import { SdkEc2 } from '../../src/cloud/ec2.js';
import { Ec2NodeLookup } from '../../src/cloud/node-lookup.js';
import type { AttachRecords, AttachTarget, Driver } from '../../src/core/driver.js';
import { registerHost, resolveNode } from '../../src/core/hosts.js';
import { boolOption } from '../../src/core/option-schemas.js';
import { parseOptions } from '../../src/core/options.js';
import { DriverRegistry } from '../../src/core/registry.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { failure } from '../helpers/failure.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';

/**
 * Attachments made for another host (Kubernetes' controller-manager attaching for a node) and on
 * this one (kubelet's waitforattach), arbitrated in the store: one host at a time, preemption only
 * when the store proves nobody uses the volume, detach refused while that host mounts it.
 */
const NODE_B: AttachTarget = { host: 'node-b', identity: { instanceId: 'i-b' } };
const NODE_C: AttachTarget = { host: 'node-c', identity: { instanceId: 'i-c' } };
const I_1 = 'i-00000000000000001';
const I_9 = 'i-00000000000000009';

/** A cloud disk: attachable from anywhere; each attachment is a device name; `here` shows it locally. */
class FakeDisk implements Partial<Driver> {
  readonly name = 'disk';
  readonly scope = 'global' as const;
  readonly needsAttach = true;
  readonly attachesRemotely = true;
  readonly lazyUnmount = false;
  readonly optionSpecs = { preempt: { schema: boolOption, help: 'take over from an unused host' } };
  readonly attached = new Map<string, string>(); // volume -> host
  readonly calls: string[] = [];
  /** What the store showed each attach, and its record's device when the attach noted its name. */
  readonly shown: { before: string[]; recordWhenNoted: string | undefined }[] = [];
  constructor(private readonly t: () => TestRuntime) {}
  parseOptions(raw: Record<string, string>) {
    return parseOptions('disk', this.optionSpecs, raw, { preempt: 'false' });
  }
  async provision() {
    return { fields: {}, adopted: false, removePolicy: 'delete' as const };
  }
  async destroy() {}
  async attach(vol: { name: string }, target?: AttachTarget, recorded?: AttachRecords) {
    const host = target?.host ?? TEST_HOST;
    await recorded?.noteDevice('/dev/xvdf'); // before "the cloud call"
    const record = (await this.t().store.getAttachments(vol.name)).find((a) => a.host === host);
    this.shown.push({
      before: (recorded?.before ?? []).map((a) => `${a.host} ${a.device} ${a.state}`),
      recordWhenNoted: record && `${record.device} ${record.state}`,
    });
    this.calls.push(`attach ${vol.name} ${host}`);
    this.attached.set(vol.name, host);
    return { device: '/dev/xvdf' };
  }
  async localDevice(vol: { name: string }) {
    this.calls.push(`local ${vol.name}`);
    this.t().mounter.addBlockDevice('/dev/loop7');
    return '/dev/loop7';
  }
  async detach(vol: { name: string }, _a: unknown, target?: AttachTarget) {
    this.calls.push(`detach ${vol.name} ${target?.host ?? TEST_HOST}`);
    this.attached.delete(vol.name);
  }
  mountSpec(_vol: { name: string }, a: { device: string } | undefined) {
    return { kind: 'block' as const, device: a?.device ?? '', fsType: 'ext4', mountOptions: [] };
  }
  describe() {
    return {};
  }
}

let t: TestRuntime;
let disk: FakeDisk;

beforeEach(async () => {
  disk = new FakeDisk(() => t);
  const registry = new DriverRegistry();
  await registerBuiltins(registry);
  registry.register('disk', () => disk as unknown as Driver);
  t = await createTestRuntime({ registry, flags: { drivers: ['local', 'disk'] } });
});

afterEach(async () => {
  await t.cleanup();
});

describe('attach for another host', () => {
  it('records the attachment under that host, idempotently, without mounting anything here', async () => {
    await t.manager.create('disk', 'vol1', {});
    expect(await t.manager.attach('disk', 'vol1', NODE_B)).toBe('/dev/xvdf');
    expect(await t.manager.attach('disk', 'vol1', NODE_B)).toBe('/dev/xvdf');
    expect(disk.calls).toEqual(['attach vol1 node-b']);
    expect(await t.store.getAttachments('vol1')).toEqual([
      expect.objectContaining({ host: 'node-b', device: '/dev/xvdf', state: 'attached' }),
    ]);
    expect(await t.manager.isAttached('disk', 'vol1', 'node-b')).toBe(true);
    expect(await t.manager.isAttached('disk', 'vol1', 'node-c')).toBe(false);
    expect(await t.manager.isAttached('local', 'vol1', 'node-b')).toBe(false);
    expect(t.mounter.count('mount')).toBe(0);
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it('refuses a second host, naming the first; preempt takes it only when nobody mounts it there', async () => {
    await t.manager.create('disk', 'vol1', {});
    await t.manager.attach('disk', 'vol1', NODE_B);
    const err = await failure(t.manager.attach('disk', 'vol1', NODE_C));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      'volume vol1 is attached to host node-b; release it there, or create the volume with preempt=true to take it over',
    );
    await t.manager.create('disk', 'vol2', { preempt: 'true' });
    await t.manager.attach('disk', 'vol2', NODE_B);
    await t.store.putMount({
      volume: 'vol2',
      host: 'node-b',
      mountpoint: '/m',
      refs: { 'pod:x:y': 1 },
      state: 'mounted',
      updatedAt: 't',
    });
    const used = await failure(t.manager.attach('disk', 'vol2', NODE_C));
    expect(used.message).toBe(
      'volume vol2 is attached to host node-b with 1 active mount; preempt takes a volume only when nobody uses it',
    );
    await t.store.deleteMount('vol2', 'node-b');
    expect(await t.manager.attach('disk', 'vol2', NODE_C)).toBe('/dev/xvdf');
    expect((await t.store.getAttachments('vol2')).map((a) => a.host)).toEqual(['node-c']);
    expect(disk.calls.filter((c) => c.startsWith('attach vol1'))).toEqual(['attach vol1 node-b']);
  });

  it("shows the driver the store's attachment records, and records the name it notes before the cloud call", async () => {
    await t.manager.create('disk', 'vol1', { preempt: 'true' });
    await t.manager.attach('disk', 'vol1', NODE_B);
    await t.manager.attach('disk', 'vol1', NODE_C);
    expect(disk.shown).toEqual([
      { before: [], recordWhenNoted: '/dev/xvdf attaching' },
      { before: ['node-b /dev/xvdf attached'], recordWhenNoted: '/dev/xvdf attaching' },
    ]);
  });

  it('is refused for drivers that attach only on the host itself', async () => {
    await t.manager.create('local', 'img1', { size: '64M' });
    const err = await failure(t.manager.attach('local', 'img1', NODE_B));
    expect(err.code).toBe('NOT_SUPPORTED');
    expect(await t.store.getAttachments('img1')).toEqual([]);
  });
});

describe('detach from a host', () => {
  it('is refused while the host mounts the volume, even an unmount that did not finish', async () => {
    await t.manager.create('disk', 'vol1', {});
    await t.manager.attach('disk', 'vol1', NODE_B);
    const mount = {
      volume: 'vol1',
      host: 'node-b',
      mountpoint: '/m',
      state: 'mounted' as const,
      updatedAt: 't',
    };
    await t.store.putMount({ ...mount, refs: { a: 1, b: 1 } });
    expect((await failure(t.manager.detach('disk', 'vol1', NODE_B))).message).toBe(
      'volume vol1 has 2 active mounts on host node-b; it is detached after the last one ends',
    );
    await t.store.putMount({ ...mount, refs: {}, state: 'unmounting' });
    expect((await failure(t.manager.detach('disk', 'vol1', NODE_B))).message).toBe(
      'volume vol1 is still mounted on host node-b (an unmount did not finish); stowage on that host finishes it first',
    );
    expect(disk.attached.get('vol1')).toBe('node-b');
    await t.store.deleteMount('vol1', 'node-b');
    await t.manager.detach('disk', 'vol1', NODE_B);
    await t.manager.detach('disk', 'vol1', NODE_B);
    expect(disk.calls).toEqual(['attach vol1 node-b', 'detach vol1 node-b']);
    expect(await t.store.getAttachments('vol1')).toEqual([]);
  });
});

describe('attach here (kubelet waitforattach)', () => {
  it('uses the attachment a controller recorded for this host and answers the local device', async () => {
    await t.manager.create('disk', 'vol1', {});
    await t.manager.attach('disk', 'vol1', { host: TEST_HOST, identity: {} });
    expect(await t.manager.attachHere('disk', 'vol1')).toBe('/dev/loop7');
    expect(disk.calls).toEqual([`attach vol1 ${TEST_HOST}`, 'local vol1']);
  });

  it('attaches from here when nothing is recorded, and a mount then reuses that attachment', async () => {
    await t.manager.create('disk', 'vol1', {});
    expect(await t.manager.attachHere('disk', 'vol1')).toBe('/dev/loop7');
    await t.manager.mount('disk', 'vol1', 'pod:p1:vol1');
    expect(disk.calls.filter((c) => c.startsWith('attach'))).toHaveLength(1);
    // The record keeps the cloud's name; the mount used the local device.
    expect((await t.store.getAttachments('vol1'))[0]?.device).toBe('/dev/xvdf');
    expect(t.mounter.callsOf('mount')[0]?.path).toContain('vol1');
  });
});

describe('hosts', () => {
  let fake: FakeEc2;
  beforeAll(async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'test');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test');
    fake = await FakeEc2.start();
  });
  afterAll(async () => {
    await fake.stop();
    vi.unstubAllEnvs();
  });
  /** The suite's EC2 endpoint through the real SDK, knowing these instances. */
  const ec2 = (instances: { id: string; availabilityZone: string; privateDnsName: string }[]) => {
    for (const i of instances)
      fake.addInstance({
        instanceId: i.id,
        availabilityZone: i.availabilityZone,
        privateDnsName: i.privateDnsName,
      });
    return new SdkEc2({ region: 'us-east-1', endpoint: fake.url, maxAttempts: 1, requestTimeoutMs: 5000 });
  };

  it("registers this host with its drivers' identity, merged with what was recorded", async () => {
    await t.store.upsertHost({ id: TEST_HOST, identity: { pid: 1, instanceId: 'old' }, lastSeen: 't' });
    const withIdentity = { hostIdentity: async () => ({ instanceId: 'i-new' }) } as unknown as Driver;
    const failing = {
      name: 'x',
      hostIdentity: async () => Promise.reject(new StowageError('UNAVAILABLE', 'no IMDS')),
    };
    const h = await registerHost(
      t.store,
      TEST_HOST,
      [withIdentity, failing as unknown as Driver],
      t.runtime.log,
    );
    expect(h.identity).toMatchObject({ pid: 1, instanceId: 'i-new' });
    expect((await t.store.listHosts())[0]?.identity).toEqual(h.identity);
  });

  it('finds a node by host id, hostname or private DNS name, then through EC2', async () => {
    await t.store.upsertHost({
      id: 'h1',
      identity: { hostname: 'node-one', instanceId: I_1 },
      lastSeen: 't',
    });
    await t.store.upsertHost({ id: 'h2', identity: { privateDnsName: 'ip-2.ec2.internal' }, lastSeen: 't' });
    expect((await resolveNode(t.store, 'h1')).host).toBe('h1');
    expect((await resolveNode(t.store, 'node-one')).host).toBe('h1');
    expect((await resolveNode(t.store, 'ip-2.ec2.internal')).host).toBe('h2');
    const cloud = ec2([
      { id: I_1, availabilityZone: 'us-east-1a', privateDnsName: 'ip-1.ec2.internal' },
      { id: I_9, availabilityZone: 'us-east-1b', privateDnsName: 'ip-9.ec2.internal' },
    ]);
    // Registered under another name: found by its instance, keeping the host id.
    expect(await resolveNode(t.store, 'ip-1.ec2.internal', new Ec2NodeLookup(cloud))).toEqual({
      host: 'h1',
      identity: {
        hostname: 'node-one',
        instanceId: I_1,
        availabilityZone: 'us-east-1a',
        privateDnsName: 'ip-1.ec2.internal',
      },
    });
    // Not registered at all: the node name becomes the host id.
    expect(await resolveNode(t.store, 'ip-9.ec2.internal', new Ec2NodeLookup(cloud))).toEqual({
      host: 'ip-9.ec2.internal',
      identity: { instanceId: I_9, availabilityZone: 'us-east-1b', privateDnsName: 'ip-9.ec2.internal' },
    });
    expect((await failure(resolveNode(t.store, 'nowhere'))).message).toBe(
      'node nowhere is not a registered stowage host; run the stowage DaemonSet (or `stowage hosts register`) on it',
    );
    expect((await failure(resolveNode(t.store, '../etc'))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('ebs through the manager: attachments stowage did not make (defect 3), Create/Remove after a crash', () => {
  const ME = 'i-0aaaaaaaaaaaaaaa1';
  let fake: FakeEc2;
  let te: TestRuntime;
  let dir: string;
  let sdk: SdkEc2;

  beforeEach(async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'test');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test');
    dir = await mkdtemp(join(tmpdir(), 'stowage-ebs-core-'));
    await execa('mknod', [join(dir, 'blk'), 'b', '7', '201']); // loop major, a minor nobody uses
    const node = await realpath(join(dir, 'blk'));
    fake = await FakeEc2.start({
      stateDelayMs: 20,
      blockDevices: {
        imageDir: join(dir, 'images'),
        devDir: join(dir, 'dev'),
        byIdDir: join(dir, 'by-id'),
        node,
      },
    });
    fake.addInstance({ instanceId: ME, availabilityZone: 'us-east-1a' });
    sdk = new SdkEc2({ region: 'us-east-1', endpoint: fake.url, maxAttempts: 1, requestTimeoutMs: 5000 });
    te = await createTestRuntime({
      flags: {
        drivers: ['ebs'],
        aws: { region: 'us-east-1', instanceId: ME, availabilityZone: 'us-east-1a' },
        ebs: {
          endpoint: fake.url,
          devDir: join(dir, 'dev'),
          byIdDir: join(dir, 'by-id'),
          sysBlockDir: join(dir, 'sys-block'),
          attachTimeout: '5s',
        },
      },
    });
    te.mounter.addBlockDevice(node);
  });

  afterEach(async () => {
    await te.cleanup();
    await fake.stop();
    expect(fake.errors).toEqual([]);
    await rm(dir, { recursive: true, force: true });
    vi.unstubAllEnvs();
  });

  const idOf = async (name: string) => (await te.store.getVolume(name))?.fields.volumeId as string;
  const attachments = (id: string) =>
    fake.volume(id)?.attachments.map((a) => `${a.instanceId} ${a.device} ${a.state}`);
  const detaches = (id: string) =>
    fake.calls.filter((c) => c.action === 'DetachVolume' && c.params.VolumeId === id);
  const settled = (id: string, want: string) =>
    pollUntil(async () => (fake.volume(id)?.state === want ? true : undefined), {
      timeoutMs: 3000,
      what: want,
    });

  it('refuses the Mount, and neither its undo, reconcile nor Remove detaches it; once detached by its owner it mounts', async () => {
    await te.manager.create('ebs', 'theirs', { size: '1' });
    const id = await idOf('theirs');
    await sdk.attachVolume(id, ME, '/dev/xvdp'); // someone's `aws ec2 attach-volume` for this instance
    await settled(id, 'in-use');
    await pollUntil(async () => (attachments(id)?.[0]?.endsWith('attached') ? true : undefined), {
      timeoutMs: 3000,
      what: 'attached',
    });

    const err = await failure(te.manager.mount('ebs', 'theirs', 'a'.repeat(64)));
    expect(err.code).toBe('IN_USE');
    expect(err.message).toContain(
      `is attached to instance ${ME} (this host) as /dev/xvdp, and stowage did not attach it`,
    );
    expect(await te.store.getAttachments('theirs')).toEqual([]);
    await te.manager.reconcile();
    const removed = await failure(te.manager.remove('ebs', 'theirs'));
    expect(removed.code).toBe('IN_USE'); // attached: nothing deleted either
    expect(detaches(id)).toEqual([]);
    expect(attachments(id)).toEqual([`${ME} /dev/xvdp attached`]);

    await sdk.detachVolume(id, ME); // the deliberate hand-over
    await settled(id, 'available');
    await te.manager.mount('ebs', 'theirs', 'a'.repeat(64));
    expect(attachments(id)).toEqual([`${ME} /dev/xvdf attached`]);
    await te.manager.unmount('ebs', 'theirs', 'a'.repeat(64));
    expect(detaches(id)).toHaveLength(2); // its owner's, then stowage's own after the unmount
    expect(attachments(id)).toEqual([]);
  });

  /** The record a Create killed inside provisioning leaves behind, with what it had noted. */
  async function interrupted(name: string, fields: Record<string, unknown>, createdAt: string) {
    const parsed = te.runtime.registry.get('ebs').parseOptions({ size: '1' });
    await te.store.insertVolume({
      name,
      driver: 'ebs',
      options: parsed.values,
      givenOptions: parsed.given,
      removePolicy: 'retain', // the placeholder: no policy is decided before provisioning ends
      adopted: false,
      createdAt,
      status: 'creating',
      fields,
    });
  }

  it('Remove of a Create killed after CreateVolume deletes that EBS volume (noted by id, or only by token)', async () => {
    for (const [name, notedId] of [
      ['killed-late', true],
      ['killed-early', false],
    ] as const) {
      const createdAt = new Date().toISOString();
      const token = createToken(name, createdAt);
      const made = await sdk.createVolume({
        clientToken: token,
        type: 'gp3',
        sizeGiB: 1,
        availabilityZone: 'us-east-1a',
        tags: { 'stowage.io/create-token': token },
      });
      await interrupted(
        name,
        { createToken: token, ...(notedId ? { volumeId: made.id, madeVolume: true } : {}) },
        createdAt,
      );
      await te.manager.remove('ebs', name);
      expect(await te.store.getVolume(name)).toBeUndefined();
      expect(fake.calls.filter((c) => c.action === 'DeleteVolume').map((c) => c.params.VolumeId)).toContain(
        made.id,
      );
    }
    expect(fake.volumes.filter((v) => v.state !== 'deleting')).toEqual([]); // nothing left behind
  });

  it('Remove of an interrupted Create that was adopting a volume keeps it; a Create run again gets the same volume', async () => {
    const adopted = await sdk.createVolume({
      clientToken: 'someone-else',
      type: 'gp3',
      sizeGiB: 1,
      availabilityZone: 'us-east-1a',
      tags: {},
    });
    await interrupted('adopting', {}, new Date().toISOString());
    await te.manager.remove('ebs', 'adopting');
    expect(fake.calls.filter((c) => c.action === 'DeleteVolume')).toEqual([]);
    expect(fake.volume(adopted.id)?.state).not.toBe('deleting');

    // Killed after CreateVolume; the user runs Create again instead of Remove: the same volume.
    const createdAt = new Date().toISOString();
    const token = createToken('resumed', createdAt);
    await interrupted('resumed', { createToken: token }, createdAt);
    const vol = await te.manager.create('ebs', 'resumed', { size: '1' });
    expect(vol.status).toBe('ready');
    const again = await te.manager.create('ebs', 'resumed', { size: '1' });
    expect(again.fields.volumeId).toBe(vol.fields.volumeId);
    expect(fake.volumes.filter((v) => v.tags['stowage.io/create-token'] === token)).toHaveLength(1);
  });

  it('reconcile detaches an attach of its own that a crash interrupted after AttachVolume (its name was noted)', async () => {
    await te.manager.create('ebs', 'mine', { size: '1' });
    const id = await idOf('mine');
    // As the store and EC2 are when the daemon died right after AttachVolume.
    await te.store.putAttachment({
      volume: 'mine',
      host: TEST_HOST,
      device: '/dev/xvdf',
      state: 'attaching',
      updatedAt: new Date().toISOString(),
    });
    await sdk.attachVolume(id, ME, '/dev/xvdf');
    await settled(id, 'in-use');
    await te.manager.reconcile();
    expect(detaches(id)).toHaveLength(1);
    await settled(id, 'available');
    expect(await te.store.getAttachments('mine')).toEqual([]);
  });
});
