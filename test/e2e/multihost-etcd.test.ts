import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { callPlugin } from '../helpers/plugin-client.js';
import { type EtcdService, startEtcd } from '../services/etcd.js';
import { DaemonProcess } from './daemon-process.js';
import { installDrivers, KubeletSim, pvOptions } from './kubelet-sim.js';

/**
 * Three `stowage daemon` processes with their own host ids, sockets, data dirs and EC2 instances,
 * sharing one real etcd and the suite's EC2 endpoint (attachments become real loop devices, each
 * instance under its own /dev directory). The store decides who gets an EBS volume before any
 * cloud call; a killed host's lease runs out; etcd going away fails requests fast.
 */
const HOSTS = ['host-a', 'host-b', 'host-c'] as const;
const INSTANCE: Record<string, string> = {
  'host-a': 'i-0a0000000000000a1',
  'host-b': 'i-0a0000000000000b2',
  'host-c': 'i-0a0000000000000c3',
};
const AZ = 'us-east-1a';
const ENV = { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'secret-for-tests-only' };
const ROUNDS = 50;
const LEASE_TTL_S = 2;

let base: string;
let etcd: EtcdService;
let ec2: FakeEc2;
const daemons: Record<string, DaemonProcess> = {};

const mountId = (host: string, n: number) => `${host}-${String(n).padStart(4, '0')}`.padEnd(64, '0');
const ebsVolume = (name: string) => ec2.volumes.find((v) => v.tags.Name === name && v.state !== 'deleted');

function plugin(host: string, endpoint: string, body: unknown, timeoutMs = 30_000) {
  return callPlugin(daemons[host]!.socket('ebs'), endpoint, body, timeoutMs);
}

async function hostStatus(): Promise<Record<string, string>> {
  const res = await daemons['host-b']!.cli(['hosts', 'ls', '--json']);
  expect(res.exitCode, res.stderr).toBe(0);
  return Object.fromEntries(
    (JSON.parse(res.stdout) as { id: string; status: string }[]).map((h) => [h.id, h.status]),
  );
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-multihost-'));
  etcd = await startEtcd();
  ec2 = await FakeEc2.start({
    blockDevices: {
      imageDir: join(base, 'ec2'),
      devDir: join(base, 'dev'),
      byIdDir: join(base, 'dev', 'by-id'),
    },
  });
  for (const host of HOSTS) {
    const devDir = join(base, host, 'dev');
    const byIdDir = join(devDir, 'disk', 'by-id');
    await mkdir(byIdDir, { recursive: true });
    ec2.addInstance({ instanceId: INSTANCE[host]!, availabilityZone: AZ, blockDevices: { devDir, byIdDir } });
    const configFile = join(base, `${host}.yaml`);
    await writeFile(
      configFile,
      [
        `hostId: ${host}`,
        `state: ${etcd.url}/stowage-e2e`,
        `dataDir: ${join(base, host, 'data')}`,
        'flexvolume:',
        `  kubeletDir: ${join(base, host, 'kubelet')}`,
        'etcd:',
        '  requestTimeoutMs: 1500',
        `  leaseTtlSeconds: ${LEASE_TTL_S}`,
        'timeouts:',
        '  lockWaitMs: 20000',
        'aws:',
        '  region: us-east-1',
        `  instanceId: ${INSTANCE[host]}`,
        `  availabilityZone: ${AZ}`,
        'ebs:',
        `  endpoint: ${ec2.url}`,
        `  devDir: ${devDir}`,
        `  byIdDir: ${byIdDir}`,
        '  attachTimeout: 10s',
        '',
      ].join('\n'),
    );
    daemons[host] = new DaemonProcess({
      dataDir: join(base, host, 'data'),
      socketDir: join(base, host, 'sockets'),
      logFile: join(base, host, 'daemon.log'),
      drivers: ['local', 'ebs'],
      configFile,
      env: ENV,
    });
  }
  await Promise.all(HOSTS.map((h) => daemons[h]!.start()));
}, 120_000);

afterAll(async () => {
  for (const d of Object.values(daemons)) await d.stop().catch(() => undefined);
  // A killed host leaves its mounts behind, as a crashed machine would.
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '');
  for (const m of mounts.filter((p) => base && p.startsWith(base)).reverse()) {
    await execa('umount', ['-l', m], { reject: false });
  }
  await ec2?.stop();
  await etcd?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('three hosts, one etcd', () => {
  it('registers every host with a live lease; names are cluster-wide and Docker hears scope global', async () => {
    expect(await hostStatus()).toEqual({ 'host-a': 'live', 'host-b': 'live', 'host-c': 'live' });
    const created = await plugin('host-a', 'VolumeDriver.Create', { Name: 'race', Opts: { size: '1' } });
    expect(created.body.Err).toBe('');
    for (const h of HOSTS) {
      // Get answers from each daemon's read cache: the creating host at once, the others within
      // the watch's lag (milliseconds).
      await expect
        .poll(async () => (await plugin(h, 'VolumeDriver.Get', { Name: 'race' })).body.Err, { timeout: 5000 })
        .toBe('');
      expect((await plugin(h, 'VolumeDriver.Capabilities', {})).body).toEqual({
        Capabilities: { Scope: 'global' },
        Err: '',
      });
    }
  });

  it(`${ROUNDS} rounds of racing Mounts of one EBS volume: exactly one host wins each round`, async () => {
    const winners: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const replies = await Promise.all(
        HOSTS.map(async (h) => ({
          h,
          r: await plugin(h, 'VolumeDriver.Mount', { Name: 'race', ID: mountId(h, round) }),
        })),
      );
      const won = replies.filter((x) => x.r.body.Err === '');
      expect(won, JSON.stringify(replies.map((x) => [x.h, x.r.body]))).toHaveLength(1);
      const winner = won[0]!.h;
      winners.push(winner);
      for (const { h, r } of replies) {
        if (h === winner) continue;
        expect(r.body.Err).toMatch(
          new RegExp(`^volume race is attached to host ${winner} with 1 active mount; `),
        );
      }
      const mountpoint = String(won[0]!.r.body.Mountpoint);
      if (round === 0) await writeFile(join(mountpoint, 'first'), `written by ${winner}\n`);
      expect(await readFile(join(mountpoint, 'first'), 'utf8')).toBe(`written by ${winners[0]}\n`);
      const un = await plugin(winner, 'VolumeDriver.Unmount', { Name: 'race', ID: mountId(winner, round) });
      expect(un.body.Err).toBe('');
    }
    const v = ebsVolume('race')!;
    // The endpoint's own log: never attached to two instances at once, attached once per round.
    expect(ec2.maxConcurrentAttachments(v.volumeId)).toBe(1);
    expect(
      ec2.calls.filter((c) => c.action === 'AttachVolume' && c.params.VolumeId === v.volumeId),
    ).toHaveLength(ROUNDS);
    expect(v).toMatchObject({ state: 'available', attachments: [] });
  }, 600_000);

  it('after kill -9 of the holder its lease runs out: preempt takes the volume, data intact; without preempt refused', async () => {
    for (const [name, preempt] of [
      ['take', 'true'],
      ['keep', 'false'],
    ] as const) {
      const c = await plugin('host-a', 'VolumeDriver.Create', { Name: name, Opts: { size: '1', preempt } });
      expect(c.body.Err).toBe('');
      const m = await plugin('host-a', 'VolumeDriver.Mount', { Name: name, ID: mountId('host-a', 900) });
      expect(m.body.Err).toBe('');
      await writeFile(join(String(m.body.Mountpoint), 'data'), `${name} from host-a\n`);
    }
    await execa('sync');
    // Alive, the holder keeps it even against preempt: it has a mount.
    const early = await plugin('host-b', 'VolumeDriver.Mount', { Name: 'take', ID: mountId('host-b', 900) });
    expect(early.body.Err).toMatch(
      /^volume take is attached to host host-a with 1 active mount; preempt takes a volume only when nobody uses it/,
    );

    await daemons['host-a']!.kill();
    await expect
      .poll(async () => (await hostStatus())['host-a'], { timeout: 30_000, interval: 250 })
      .toBe('gone');

    const took = await plugin('host-b', 'VolumeDriver.Mount', { Name: 'take', ID: mountId('host-b', 901) });
    expect(took.body.Err).toBe('');
    expect(await readFile(join(String(took.body.Mountpoint), 'data'), 'utf8')).toBe('take from host-a\n');
    const refused = await plugin('host-b', 'VolumeDriver.Mount', {
      Name: 'keep',
      ID: mountId('host-b', 901),
    });
    expect(refused.body.Err).toMatch(
      /^volume keep is attached to host host-a, which is gone \(its lease expired; registered [0-9T:.-]+Z\); once you know it is down, create the volume with preempt=true/,
    );
    for (const name of ['take', 'keep']) {
      expect(ec2.maxConcurrentAttachments(ebsVolume(name)!.volumeId)).toBe(1);
    }
    expect(ebsVolume('keep')?.attachments).toEqual([
      expect.objectContaining({ instanceId: INSTANCE['host-a'] }),
    ]);
    const un = await plugin('host-b', 'VolumeDriver.Unmount', { Name: 'take', ID: mountId('host-b', 901) });
    expect(un.body.Err).toBe('');
  }, 120_000);

  it('an etcd outage: Get and List answer from the read cache, changes fail fast, nothing half-recorded, service resumes', async () => {
    etcd.pause();
    try {
      for (const [endpoint, body] of [
        ['VolumeDriver.Get', { Name: 'race' }],
        ['VolumeDriver.List', {}],
      ] as const) {
        const r = await plugin('host-c', endpoint, body);
        expect(r.body.Err, endpoint).toBe('');
      }
      // Once the watch has been silent for 3 s (max(3 heartbeats, requestTimeoutMs)), Get says so.
      await expect
        .poll(
          async () =>
            (
              (await plugin('host-c', 'VolumeDriver.Get', { Name: 'race' })).body.Volume as {
                Status?: { store?: string };
              }
            )?.Status?.store,
          { timeout: 10_000, interval: 250 },
        )
        .toMatch(/^stale since \S+ \(etcd did not answer the watch for \d+ ms\): as of revision \d+$/);
      for (const [endpoint, body] of [
        ['VolumeDriver.Create', { Name: 'during-outage', Opts: { size: '1' } }],
        ['VolumeDriver.Mount', { Name: 'race', ID: mountId('host-c', 950) }],
      ] as const) {
        const start = Date.now();
        const r = await plugin('host-c', endpoint, body);
        const took = Date.now() - start;
        // Either of the two fast failures: the request's own deadline, or (once gRPC's keepalive has
        // given up on the silent server, which a loaded machine reaches sooner) the channel closed.
        expect(r.body.Err, endpoint).toMatch(
          /the metadata store etcd at http:\/\/127\.0\.0\.1:\d+ (did not answer within 1500 ms|could not be reached)/,
        );
        expect(took, endpoint).toBeLessThan(10_000);
      }
    } finally {
      etcd.resume();
    }
    // Nothing was half-recorded: no volume, no mount, nothing attached.
    expect((await plugin('host-c', 'VolumeDriver.Get', { Name: 'during-outage' })).body.Err).toMatch(
      /does not exist/,
    );
    const race = await plugin('host-c', 'VolumeDriver.Get', { Name: 'race' });
    expect(race.body.Err).toBe('');
    expect(ebsVolume('race')?.attachments).toEqual([]);
    expect(ebsVolume('during-outage')).toBeUndefined();
    // And etcd killed outright, then back: List still answers (stale), a change is refused, and
    // the same daemons serve again.
    await etcd.kill();
    expect((await plugin('host-c', 'VolumeDriver.List', {})).body.Err).toBe('');
    const refused = await plugin('host-c', 'VolumeDriver.Create', {
      Name: 'while-down',
      Opts: { size: '1' },
    });
    expect(refused.body.Err).toMatch(/the metadata store etcd/);
    await etcd.restart();
    await expect
      .poll(async () => (await plugin('host-c', 'VolumeDriver.List', {})).body.Err, {
        timeout: 20_000,
        interval: 200,
      })
      .toBe('');
    const m = await plugin('host-c', 'VolumeDriver.Mount', { Name: 'race', ID: mountId('host-c', 951) });
    expect(m.body.Err).toBe('');
    expect(await readFile(join(String(m.body.Mountpoint), 'first'), 'utf8')).toMatch(/^written by host-/);
    expect(
      (await plugin('host-c', 'VolumeDriver.Unmount', { Name: 'race', ID: mountId('host-c', 951) })).body.Err,
    ).toBe('');
  }, 120_000);

  it('the flexvolume executable works on the shared store: controller on one host, kubelet on another', async () => {
    const pluginDir = join(base, 'plugins');
    await installDrivers(pluginDir, ['ebs']);
    const sim = (host: string) =>
      new KubeletSim({
        pluginDir,
        kubeletDir: join(base, host, 'kubelet'),
        driver: 'ebs',
        env: { ...ENV, STOWAGE_CONFIG: join(base, `${host}.yaml`) },
      });
    const controller = sim('host-b');
    const node = sim('host-c');
    const pv = JSON.stringify(pvOptions('pv-k8s', { name: 'k8s-vol', size: '1' }));
    // host-c registered itself (its daemon): the controller finds it by host id, through etcd.
    expect(await controller.ok(['attach', pv, 'host-c'])).toEqual({
      status: 'Success',
      device: expect.stringMatching(/^\/dev\/xvd[f-z]$/),
    });
    expect(ebsVolume('k8s-vol')?.attachments).toEqual([
      expect.objectContaining({ instanceId: INSTANCE['host-c'] }),
    ]);
    const { device } = await node.ok(['waitforattach', '/dev/xvdf', pv]);
    const dmp = node.deviceMountPath('k8s-vol');
    await mkdir(dmp, { recursive: true });
    await node.ok(['mountdevice', dmp, String(device), pv]);
    await writeFile(join(dmp, 'f'), 'through etcd\n');
    // Another host's Docker sees the volume in use by host-c.
    const rm1 = await plugin('host-b', 'VolumeDriver.Remove', { Name: 'k8s-vol' });
    expect(rm1.body.Err).toMatch(/^volume k8s-vol is in use by 1 mount on host host-c/);
    expect(await controller.fails(['detach', 'k8s-vol', 'host-c'])).toMatch(
      /^volume k8s-vol has 1 active mount on host host-c/,
    );
    await node.ok(['unmountdevice', dmp]);
    await controller.ok(['detach', 'k8s-vol', 'host-c']);
    expect(ebsVolume('k8s-vol')).toMatchObject({ state: 'available', attachments: [] });
    expect((await plugin('host-b', 'VolumeDriver.Remove', { Name: 'k8s-vol' })).body.Err).toBe('');
  }, 120_000);
});
