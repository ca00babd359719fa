import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../../src/core/backoff.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { callPlugin } from '../helpers/plugin-client.js';
import { DaemonProcess } from './daemon-process.js';
import { docker, PLUGIN_DIR, TEST_IMAGE } from './env.js';

/**
 * stowage-ebs with a real dockerd, the real AWS SDK talking to the suite's stateful EC2 endpoint,
 * and real block devices: the endpoint's AttachVolume makes a loop device appear under the
 * requested name, so the device wait, blkid, mkfs and mount run on the kernel's devices.
 */
const INSTANCE = 'i-0e2e0000000000001';
const AZ = 'us-east-1a';
let base: string;
let ec2: FakeEc2;
let daemon: DaemonProcess;

const ebsVolume = (name: string) => ec2.volumes.find((v) => v.tags.Name === name && v.state !== 'deleted');
const logOf = () => readFile(join(base, 'daemon.log'), 'utf8');

function run(args: string[]) {
  return docker(['run', '--rm', '--network', 'none', ...args]);
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-ebs-'));
  const devDir = join(base, 'dev');
  const byIdDir = join(devDir, 'disk', 'by-id');
  await mkdir(byIdDir, { recursive: true });
  ec2 = await FakeEc2.start({ blockDevices: { imageDir: join(base, 'ec2'), devDir, byIdDir } });
  ec2.addInstance({ instanceId: INSTANCE, availabilityZone: AZ, usedDevices: ['/dev/xvda', '/dev/xvdf'] });
  const configFile = join(base, 'config.yaml');
  await writeFile(
    configFile,
    [
      'ebs:',
      `  endpoint: ${ec2.url}`,
      '  region: us-east-1',
      `  instanceId: ${INSTANCE}`,
      `  availabilityZone: ${AZ}`,
      `  devDir: ${devDir}`,
      `  byIdDir: ${byIdDir}`,
      '  attachTimeout: 30s',
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
  for (const v of ['ebs-db', 'ebs-restored', 'ebs-zone', 'ebs-foreign']) await docker(['volume', 'rm', v]);
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
