import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPlugins } from '../../deploy/plugins/build.js';
import { STATE_DIR } from '../../deploy/plugins/config.js';
import { pollUntil } from '../../src/base/backoff.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { FakeImds } from '../fakes/aws/imds.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, TEST_IMAGE } from './env.js';
import { stowageImage } from './stowage-image.js';

/**
 * The managed plugin stowage/ebs: the real AWS SDK inside the plugin talks to the suite's EC2
 * endpoint and instance metadata on 127.0.0.1 (the plugin has the host's network), and the
 * endpoint's attachments become real loop devices. The plugin sees them because it binds the
 * host's /dev; the name links the endpoint makes (xvdg -> /dev/loopN) live in the plugin's state
 * directory, which is a host directory, so both sides see the same path.
 */
const INSTANCE = 'i-0e2e00000000000e1';
const AZ = 'eu-west-1b';
const REGION = 'eu-west-1';
const SECRET = 'plugin-secret-for-tests-only';
let dockerd: PrivateDockerd | undefined;
let ec2: FakeEc2 | undefined;
let imds: FakeImds | undefined;
let base: string;
let stateRoot: string;
let plugin: string;

const ebsVolume = (name: string) => ec2!.volumes.find((v) => v.tags.Name === name && v.state !== 'deleted');

beforeAll(async () => {
  dockerd = await startDockerd();
  base = await mkdtemp(join(tmpdir(), 'stowage-plugin-ebs-'));
  stateRoot = join(base, 'plugins');
  const devDir = join(stateRoot, 'ebs', 'dev');
  await mkdir(join(devDir, 'disk', 'by-id'), { recursive: true });
  ec2 = await FakeEc2.start({
    region: REGION,
    blockDevices: { imageDir: join(base, 'ec2'), devDir, byIdDir: join(devDir, 'disk', 'by-id') },
  });
  ec2.addInstance({ instanceId: INSTANCE, availabilityZone: AZ, usedDevices: ['/dev/xvda'] });
  imds = await FakeImds.start({ instanceId: INSTANCE, availabilityZone: AZ, region: REGION });
  const image = await stowageImage(dockerd);
  const tag = image.split(':')[1]!;
  plugin = `stowage/ebs:${tag}`;
  await buildPlugins({ host: dockerd.host, drivers: ['ebs'], stateRoot, image, tag });
}, 900_000);

afterAll(async () => {
  await docker(['volume', 'rm', '-f', 'pebs']);
  await docker(['plugin', 'disable', '-f', plugin]);
  await docker(['plugin', 'rm', '-f', plugin]);
  await dockerd?.stop();
  await ec2?.stop();
  await imds?.stop();
  if (base) {
    const res = await execa('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { reject: false });
    const rows = res.stdout
      ? (JSON.parse(res.stdout) as { loopdevices: { name: string; 'back-file': string }[] })
      : undefined;
    for (const d of rows?.loopdevices ?? []) {
      if (d['back-file']?.includes(base)) await execa('losetup', ['-d', d.name], { reject: false });
    }
    await rm(base, { recursive: true, force: true });
  }
});

describe('managed plugin stowage/ebs with the suite EC2 endpoint and loop devices', {
  timeout: 240_000,
}, () => {
  it('enables with AWS settings given by docker plugin set', async () => {
    const set = await docker([
      'plugin',
      'set',
      plugin,
      'AWS_ACCESS_KEY_ID=AKIDPLUGINTEST',
      `AWS_SECRET_ACCESS_KEY=${SECRET}`,
      `STOWAGE_EBS_ENDPOINT=${ec2!.url}`,
      `STOWAGE_AWS_IMDS_ENDPOINT=${imds!.url}`,
      `STOWAGE_EBS_DEV_DIR=${STATE_DIR}/dev`,
      `STOWAGE_EBS_BY_ID_DIR=${STATE_DIR}/dev/disk/by-id`,
    ]);
    expect(set.exitCode, set.stderr).toBe(0);
    const en = await docker(['plugin', 'enable', plugin], 120_000);
    expect(en.exitCode, en.stderr).toBe(0);
  });

  it('creates an EBS volume in the zone the instance metadata names', async () => {
    const c = await docker(['volume', 'create', '-d', plugin, '-o', 'size=1', 'pebs'], 120_000);
    expect(c.exitCode, c.stderr).toBe(0);
    const v = ebsVolume('pebs');
    expect(v).toMatchObject({ sizeGiB: 1, state: 'available', availabilityZone: AZ });
    // AWS_REGION was left empty (the plugin's default): the region came from IMDS.
    expect(imds!.calls.some((c) => c.path.includes('placement') || c.path.includes('identity'))).toBe(true);
  });

  it('attaches, formats and mounts for a container; a second container reads; detached after', async () => {
    const w = await docker(
      ['run', '--rm', '-v', 'pebs:/data', TEST_IMAGE, 'sh', '-c', 'echo from-plugin > /data/f'],
      180_000,
    );
    expect(w.exitCode, w.stderr).toBe(0);
    const r = await docker(['run', '--rm', '-v', 'pebs:/data', TEST_IMAGE, 'cat', '/data/f'], 180_000);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('from-plugin');
    const v = ebsVolume('pebs')!;
    expect(v.state).toBe('available');
    expect(ec2!.maxConcurrentAttachments(v.volumeId)).toBe(1);
    expect(ec2!.calls.filter((c) => c.action === 'AttachVolume').length).toBe(2);
    expect(ec2!.errors).toEqual([]);
  });

  it('deletes the EBS volume on docker volume rm, leaves no device, and never logs the secret', async () => {
    const id = ebsVolume('pebs')!.volumeId;
    const res = await docker(['volume', 'rm', 'pebs'], 120_000);
    expect(res.exitCode, res.stderr).toBe(0);
    await pollUntil(async () => (ec2!.volume(id)?.state === 'deleted' ? true : undefined), {
      timeoutMs: 10_000,
      what: `${id} to be deleted`,
    });
    expect(existsSync(join(base, 'ec2', `${id}.img`))).toBe(false);
    // The plugin's output goes to dockerd's log: no credentials there.
    expect(await readFile(dockerd!.logFile, 'utf8')).not.toContain(SECRET);
    expect((await docker(['plugin', 'disable', plugin])).exitCode).toBe(0);
    expect((await docker(['plugin', 'rm', plugin])).exitCode).toBe(0);
  });
});
