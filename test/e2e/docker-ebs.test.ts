import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AttachVolumeCommand, DetachVolumeCommand, EC2Client } from '@aws-sdk/client-ec2';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../../src/base/backoff.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { callPlugin } from '../helpers/plugin-client.js';
import { DaemonProcess } from './daemon-process.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, PLUGIN_DIR, TEST_IMAGE } from './env.js';

/**
 * stowage-ebs with a real dockerd, the real AWS SDK talking to the suite's stateful EC2 endpoint,
 * and real block devices: the endpoint's AttachVolume makes a loop device appear a moment after
 * `attached`, named as a Nitro instance names it (/dev/nvmeNn1 and its by-id link), so the device
 * wait, blkid, mkfs and mount run on the kernel's devices. New volumes are missing from
 * DescribeVolumes for a moment, as on EC2.
 */
const INSTANCE = 'i-0e2e0000000000001';
const ID_A = 'a'.repeat(64);
const AZ = 'us-east-1a';
let base: string;
let ec2: FakeEc2;
let daemon: DaemonProcess;
let dockerd: PrivateDockerd | undefined;

const ebsVolume = (name: string) => ec2.volumes.find((v) => v.tags.Name === name && v.state !== 'deleted');
const logOf = () => readFile(join(base, 'daemon.log'), 'utf8');

function run(args: string[]) {
  return docker(['run', '--rm', '--network', 'none', ...args]);
}

beforeAll(async () => {
  dockerd = await startDockerd();
  base = await mkdtemp(join(tmpdir(), 'stowage-ebs-'));
  const devDir = join(base, 'dev');
  const byIdDir = join(devDir, 'disk', 'by-id');
  await mkdir(byIdDir, { recursive: true });
  ec2 = await FakeEc2.start({
    blockDevices: { imageDir: join(base, 'ec2'), devDir, byIdDir },
    consistencyDelayMs: 200,
  });
  ec2.addInstance({
    instanceId: INSTANCE,
    availabilityZone: AZ,
    usedDevices: ['/dev/xvda', '/dev/xvdf'],
    naming: 'nvme',
  });
  const configFile = join(base, 'config.yaml');
  await writeFile(
    configFile,
    [
      'aws:',
      '  region: us-east-1',
      `  instanceId: ${INSTANCE}`,
      `  availabilityZone: ${AZ}`,
      'ebs:',
      `  endpoint: ${ec2.url}`,
      `  devDir: ${devDir}`,
      `  byIdDir: ${byIdDir}`,
      '  attachTimeout: 5s',
      '  createTimeout: 30s',
      '',
    ].join('\n'),
  );
  daemon = new DaemonProcess({
    dataDir: join(base, 'data'),
    socketDir: PLUGIN_DIR,
    logFile: join(base, 'daemon.log'),
    drivers: ['local', 'ebs'],
    configFile,
    env: { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'secret-for-tests-only' },
  });
  await daemon.start();
}, 120_000);

afterAll(async () => {
  for (const v of ['ebs-db', 'ebs-restored', 'ebs-zone', 'ebs-foreign', 'ebs-take', 'ebs-theirs'])
    await docker(['volume', 'rm', v]);
  await dockerd?.stop(); // before the plugin, as Docker wants
  await daemon?.stop();
  await ec2?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('stowage-ebs with a real dockerd and the test EC2 endpoint', () => {
  it('creates an EBS volume with docker volume create, tagged and available', async () => {
    const res = await docker(['volume', 'create', '-d', 'stowage-ebs', '-o', 'size=1', 'ebs-db']);
    expect(res.exitCode, res.stderr).toBe(0);
    const v = ebsVolume('ebs-db');
    expect(v).toMatchObject({ sizeGiB: 1, state: 'available', availabilityZone: AZ, volumeType: 'gp3' });
    expect(v?.tags['stowage.io/volume']).toBe('ebs-db');
    const create = ec2.calls.find((c) => c.action === 'CreateVolume');
    expect(create?.params.ClientToken).toMatch(/^[0-9a-f]{64}$/);
    const info = JSON.parse((await docker(['volume', 'inspect', 'ebs-db'])).stdout)[0];
    expect(info.Status).toMatchObject({
      volumeId: v?.volumeId,
      availabilityZone: AZ,
      size: '1G',
      fsType: 'ext4',
    });
  });

  it('writes in one container, reads in another, across detach and re-attach', async () => {
    const w = await run(['-v', 'ebs-db:/data', TEST_IMAGE, 'sh', '-c', 'echo from-ebs > /data/f']);
    expect(w.exitCode, w.stderr).toBe(0);
    const v = ebsVolume('ebs-db')!;
    // Detached after the container: available in EC2, and the requested name skipped /dev/xvdf (in use).
    expect(v.state).toBe('available');
    const attaches = ec2.calls.filter((c) => c.action === 'AttachVolume');
    expect(attaches[0]?.params.Device).toBe('/dev/xvdg');
    const r = await run(['-v', 'ebs-db:/data', TEST_IMAGE, 'cat', '/data/f']);
    expect(r.stdout).toBe('from-ebs');
    expect(ec2.maxConcurrentAttachments(v.volumeId)).toBe(1);
    // Formatted exactly once, at the first attach.
    expect((await logOf()).match(/device is blank; formatting/g)).toHaveLength(1);
    // Found as Nitro shows it: by its by-id link to /dev/nvme1n1, nothing under /dev/xvdg.
    expect(existsSync(join(base, 'dev', 'xvdg'))).toBe(false);
  });

  it('answers Get from the store while EC2 throttles, and mounts through the throttling', async () => {
    ec2.failNext('*', { code: 'RequestLimitExceeded', times: 2 });
    const got = await callPlugin(daemon.socket('ebs'), 'VolumeDriver.Get', { Name: 'ebs-db' });
    expect(got.body.Err).toBe('');
    const r = await run(['-v', 'ebs-db:/data', TEST_IMAGE, 'cat', '/data/f']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('from-ebs');
  });

  it('does not reformat a volume created from a snapshot', async () => {
    const content = join(base, 'snap-content');
    await mkdir(content);
    await writeFile(join(content, 'marker'), 'from the snapshot\n');
    const image = join(base, 'snap.img');
    await writeFile(image, '');
    await truncate(image, 1024 ** 3);
    await execa('mkfs.ext4', ['-q', '-F', '-d', content, image]);
    ec2.addSnapshot({ snapshotId: 'snap-0e2e0000000000001', sizeGiB: 1, image, tags: { Name: 'nightly' } });

    const c = await docker([
      'volume',
      'create',
      '-d',
      'stowage-ebs',
      '-o',
      'snapshotTag=nightly',
      'ebs-restored',
    ]);
    expect(c.exitCode, c.stderr).toBe(0);
    expect(ebsVolume('ebs-restored')?.snapshotId).toBe('snap-0e2e0000000000001');
    const r = await run(['-v', 'ebs-restored:/data', TEST_IMAGE, 'cat', '/data/marker']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('from the snapshot');
    expect((await logOf()).match(/device is blank; formatting/g)).toHaveLength(1); // still only ebs-db's
  });

  it('refuses a volume attached to an instance stowage does not know, naming it', async () => {
    const c = await docker([
      'volume',
      'create',
      '-d',
      'stowage-ebs',
      '-o',
      'size=1',
      '-o',
      'preempt=true',
      'ebs-foreign',
    ]);
    expect(c.exitCode, c.stderr).toBe(0);
    const id = ebsVolume('ebs-foreign')!.volumeId;
    ec2.attachElsewhere(id, 'i-0aaaaaaaaaaaaaaaa');
    const r = await run(['-v', 'ebs-foreign:/data', TEST_IMAGE, 'true']);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(
      'volume ebs-foreign is attached to instance i-0aaaaaaaaaaaaaaaa (not a stowage host); nothing proves it is unused there, so it is not force-detached',
    );
    expect(ec2.calls.some((call) => call.action === 'DetachVolume' && call.params.VolumeId === id)).toBe(
      false,
    );
  });

  it('never uses, nor detaches, a volume someone else attached to this instance; uses it once they detach it', async () => {
    const c = await docker(['volume', 'create', '-d', 'stowage-ebs', '-o', 'size=1', 'ebs-theirs']);
    expect(c.exitCode, c.stderr).toBe(0);
    const id = ebsVolume('ebs-theirs')!.volumeId;
    // Someone runs `aws ec2 attach-volume` for this very instance: the disk appears here.
    const aws = new EC2Client({
      region: 'us-east-1',
      endpoint: ec2.url,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    try {
      await aws.send(new AttachVolumeCommand({ VolumeId: id, InstanceId: INSTANCE, Device: '/dev/xvdp' }));
      const attachedHere = async () =>
        ec2.volume(id)?.attachments.find((a) => a.instanceId === INSTANCE && a.state === 'attached');
      await pollUntil(attachedHere, { timeoutMs: 5000, what: `${id} attached by someone else` });
      const r = await run(['-v', 'ebs-theirs:/data', TEST_IMAGE, 'true']);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(
        `volume ebs-theirs (EBS ${id}) is attached to instance ${INSTANCE} (this host) as /dev/xvdp, and stowage did not attach it`,
      );
      expect(r.stderr).toContain(`aws ec2 detach-volume --volume-id ${id} --instance-id ${INSTANCE}`);
      // Neither the failed mount's undo nor anything else detached it.
      expect(ec2.calls.some((x) => x.action === 'DetachVolume' && x.params.VolumeId === id)).toBe(false);
      expect(ec2.volume(id)?.attachments).toMatchObject([
        { instanceId: INSTANCE, device: '/dev/xvdp', state: 'attached' },
      ]);
      // The deliberate hand-over: its owner detaches it; then stowage attaches it itself.
      await aws.send(new DetachVolumeCommand({ VolumeId: id, InstanceId: INSTANCE }));
      await pollUntil(async () => (ec2.volume(id)?.state === 'available' ? true : undefined), {
        timeoutMs: 5000,
        what: `${id} detached by its owner`,
      });
      const w = await run(['-v', 'ebs-theirs:/data', TEST_IMAGE, 'sh', '-c', 'echo ours > /data/f']);
      expect(w.exitCode, w.stderr).toBe(0);
      expect(ec2.calls.filter((x) => x.action === 'AttachVolume' && x.params.VolumeId === id)).toHaveLength(
        2,
      );
      expect(ec2.volume(id)?.state).toBe('available'); // and detached again after the container
    } finally {
      aws.destroy();
    }
  });

  it('refuses to attach across zones with a message that says so', async () => {
    const c = await docker([
      'volume',
      'create',
      '-d',
      'stowage-ebs',
      '-o',
      'size=1',
      '-o',
      'availabilityZone=us-east-1b',
      'ebs-zone',
    ]);
    expect(c.exitCode, c.stderr).toBe(0);
    const r = await run(['-v', 'ebs-zone:/data', TEST_IMAGE, 'true']);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(
      'is in us-east-1b but this host is in us-east-1a; EBS volumes attach only in their own zone',
    );
  });

  it('skips a device name EC2 says is taken and never uses it again', async () => {
    const sock = daemon.socket('ebs');
    expect(
      (await callPlugin(sock, 'VolumeDriver.Create', { Name: 'ebs-names', Opts: { size: '1' } })).body.Err,
    ).toBe('');
    ec2.failNext('AttachVolume', {
      code: 'InvalidParameterValue',
      message: 'Attachment point /dev/xvdg is already in use',
    });
    const m = await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'ebs-names', ID: ID_A }, 60_000);
    expect(m.body.Err).toBe('');
    const devices = ec2.calls
      .filter((c) => c.action === 'AttachVolume')
      .slice(-2)
      .map((c) => c.params.Device);
    expect(devices).toEqual(['/dev/xvdg', '/dev/xvdh']);
    expect(
      (await callPlugin(sock, 'VolumeDriver.Unmount', { Name: 'ebs-names', ID: ID_A }, 60_000)).body.Err,
    ).toBe('');
  });

  it('gives up on an attachment stuck in "attaching" at attachTimeout and force-detaches it', async () => {
    const sock = daemon.socket('ebs');
    const id = ebsVolume('ebs-names')!.volumeId;
    ec2.stickAttaching(id);
    const m = await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'ebs-names', ID: ID_A }, 60_000);
    expect(m.body.Err).toMatch(
      new RegExp(
        `timed out after 5 s waiting for EBS volume ${id} to attach to ${INSTANCE} as /dev/xvd[a-z]+`,
      ),
    );
    const detaches = ec2.calls.filter((c) => c.action === 'DetachVolume' && c.params.VolumeId === id);
    expect(detaches.map((c) => c.params.Force)).toContain('true');
    ec2.stickAttaching(id, false);
    const stuckName = ec2.calls.filter((c) => c.action === 'AttachVolume').pop()?.params.Device;
    // The next mount works under another name: the stuck one is tainted.
    const again = await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'ebs-names', ID: ID_A }, 60_000);
    expect(again.body.Err).toBe('');
    expect(ec2.calls.filter((c) => c.action === 'AttachVolume').pop()?.params.Device).not.toBe(stuckName);
    expect(
      (await callPlugin(sock, 'VolumeDriver.Unmount', { Name: 'ebs-names', ID: ID_A }, 60_000)).body.Err,
    ).toBe('');
    expect((await callPlugin(sock, 'VolumeDriver.Remove', { Name: 'ebs-names' })).body.Err).toBe('');
  });

  it('preempts from another stowage host only when the store shows no mounts there', async () => {
    const sock = daemon.socket('ebs');
    const other = 'i-0bbbbbbbbbbbbbbbb';
    const store = new SqliteStore(join(base, 'data', 'state.db'));
    try {
      await store.upsertHost({
        id: 'host-b',
        identity: { instanceId: other },
        lastSeen: new Date().toISOString(),
      });
      for (const [name, preempt] of [
        ['ebs-held', 'false'],
        ['ebs-take', 'true'],
      ] as const) {
        const c = await callPlugin(sock, 'VolumeDriver.Create', { Name: name, Opts: { size: '1', preempt } });
        expect(c.body.Err).toBe('');
        ec2.attachElsewhere(ebsVolume(name)!.volumeId, other);
      }
      // Without preempt: refused, naming the host and its (zero) mounts.
      const held = await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'ebs-held', ID: ID_A }, 60_000);
      expect(held.body.Err).toBe(
        `volume ebs-held is attached to instance ${other} (host host-b) with 0 active mounts; release it there, or create the volume with preempt=true to take it over`,
      );
      // host-b's attachment of ebs-take is stowage's: the store records it (preempt takes no other).
      await store.putAttachment({
        volume: 'ebs-take',
        host: 'host-b',
        device: '/dev/xvdz',
        state: 'attached',
        updatedAt: new Date().toISOString(),
      });
      // With preempt, but host-b's records show a mount: refused, nothing detached.
      await store.putMount({
        volume: 'ebs-take',
        host: 'host-b',
        mountpoint: '/x',
        refs: { p: 1 },
        state: 'mounted',
        updatedAt: 't',
      });
      const busy = await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'ebs-take', ID: ID_A }, 60_000);
      expect(busy.body.Err).toMatch(/with 1 active mount; preempt takes a volume only when nobody uses it$/);
      const takeId = ebsVolume('ebs-take')!.volumeId;
      expect(ec2.calls.some((c) => c.action === 'DetachVolume' && c.params.VolumeId === takeId)).toBe(false);
      // With preempt and no mounts there: force-detached from host-b and attached here.
      await store.deleteMount('ebs-take', 'host-b');
      const taken = await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'ebs-take', ID: ID_A }, 60_000);
      expect(taken.body.Err).toBe('');
      expect(
        ec2.calls.find((c) => c.action === 'DetachVolume' && c.params.VolumeId === takeId)?.params,
      ).toMatchObject({
        InstanceId: other,
        Force: 'true',
      });
      expect(ec2.volume(takeId)?.attachments.map((a) => a.instanceId)).toEqual([INSTANCE]);
      expect(ec2.maxConcurrentAttachments(takeId)).toBe(1);
      expect(await logOf()).toMatch(/preempt: force-detaching from another host/);
      expect(
        (await callPlugin(sock, 'VolumeDriver.Unmount', { Name: 'ebs-take', ID: ID_A }, 60_000)).body.Err,
      ).toBe('');
    } finally {
      await store.close();
    }
  });

  it('refuses to delete an EBS volume that is still attached elsewhere, and deletes nothing', async () => {
    const sock = daemon.socket('ebs');
    const res = await callPlugin(sock, 'VolumeDriver.Remove', { Name: 'ebs-held' });
    const id = ebsVolume('ebs-held')!.volumeId;
    expect(res.body.Err).toBe(
      `EBS volume ${id} is still attached to i-0bbbbbbbbbbbbbbbb; nothing was deleted`,
    );
    expect(ec2.volume(id)?.state).toBe('in-use');
    expect((await callPlugin(sock, 'VolumeDriver.Get', { Name: 'ebs-held' })).body.Err).toBe('');
  });

  it('deletes the EBS volume on docker volume rm and leaves no device behind', async () => {
    const id = ebsVolume('ebs-db')!.volumeId;
    const res = await docker(['volume', 'rm', 'ebs-db']);
    expect(res.exitCode, res.stderr).toBe(0);
    expect(ec2.calls.some((c) => c.action === 'DeleteVolume' && c.params.VolumeId === id)).toBe(true);
    // EC2 takes a moment to finish deleting; the endpoint models that.
    await pollUntil(async () => (ec2.volume(id)?.state === 'deleted' ? true : undefined), {
      timeoutMs: 5000,
      what: `${id} to go`,
    });
    expect(existsSync(join(base, 'ec2', `${id}.img`))).toBe(false);
    expect(ec2.errors).toEqual([]);
    // The secret never reaches the log.
    expect(await logOf()).not.toContain('secret-for-tests-only');
  });
});
