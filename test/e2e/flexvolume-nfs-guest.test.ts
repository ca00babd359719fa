import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EFS_MOUNT_DEFAULTS } from '../../src/config.js';
import { FakeEfs } from '../fakes/aws/efs-endpoint.js';
import { BEGIN_MARKER, buildGuestKernel, buildPayloadDisk, ensureGuestPackages } from './guest/build.js';
import { type GuestResult, runInGuest } from './guest/run.js';
import type {
  CallRecord,
  DriverReport,
  GuestPlan,
  GuestReport,
  HungReport,
  MountView,
} from './nfs/flex-guest-program.js';
import { ensureNfsPackages, freePort, type Ganesha, startGanesha } from './nfs/ganesha.js';

/**
 * The flexvolume executable for nfs and efs as kubelet runs it on a node, with a real kernel NFS
 * client: installed on the host with the real CLI (`stowage flexvolume install --node
 * /payload/bin/node`), carried into a qemu guest on the payload disk, and run there through the
 * installed /bin/sh wrapper by test/e2e/nfs/flex-guest-program.ts, one process per call, against
 * nfs-ganesha on the host (nfs) and the FakeEfs API with ganesha as the zone's mount target (efs).
 * The executable reads /etc/stowage/config.yaml (its default path) in the guest. The guest records
 * every reply; this file checks each strictly, and the outcome on the server. One boot for all.
 */
const PROJECT = resolve(import.meta.dirname, '../..');
const GUEST_CACHE = '/var/cache/stowage-test-guest';
const POD_A = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';
const POD_B = '6fa459ea-ee8a-3ca4-894e-db77e160355e';
const KUBELET_DIR = '/var/lib/kubelet';
const DATA_DIR = '/var/lib/stowage';
const NFS_PV = 'flex-nfs-data';
const EFS_PV = 'flex-efs-data';
const FS_ID = 'fs-0e2e0000000000001';
/** flexvolume.callTimeoutMs of the second config, used for one call against the hung server. */
const CALL_DEADLINE_MS = 6000;
/** What kubelet learns at init for nfs and efs, exactly. */
const CAPABILITIES = {
  attach: false,
  fsGroup: false,
  requiresFSResize: false,
  selinuxRelabel: true,
  supportsMetrics: false,
};

let work: string;
let exportDir: string;
let ganesha: Ganesha | undefined;
let hung: Server | undefined;
let releaser: Server | undefined;
let efs: FakeEfs | undefined;
const held: Socket[] = [];
/** Set when the guest says the hung server may come back: it then forwards to ganesha. */
let forwardTo: number | undefined;
let guest: GuestResult;
let bootMs: number | undefined;
let report: GuestReport;

/** A YAML config file for the executable (JSON is YAML). */
function configYaml(o: { efsPort: string; ganeshaPort: number; callTimeoutMs?: number }): string {
  return `${JSON.stringify(
    {
      hostId: 'guest-node',
      dataDir: DATA_DIR,
      log: { level: 'debug' },
      flexvolume: {
        kubeletDir: KUBELET_DIR,
        ...(o.callTimeoutMs ? { callTimeoutMs: o.callTimeoutMs } : {}),
      },
      aws: { region: 'us-east-1', instanceId: 'i-0e2e0000000000002', availabilityZone: 'us-east-1a' },
      efs: {
        endpoint: `http://10.0.2.2:${o.efsPort}`,
        // AWS's recommended options, plus ganesha's port (a real mount target listens on 2049).
        mountOptions: [...EFS_MOUNT_DEFAULTS, `port=${o.ganeshaPort}`],
      },
    },
    null,
    2,
  )}\n`;
}

beforeAll(async () => {
  await ensureNfsPackages();
  await ensureGuestPackages();
  work = await mkdtemp(join(tmpdir(), 'stowage-flex-nfs-guest-'));
  exportDir = join(work, 'export');
  const port = await freePort();
  ganesha = await startGanesha({ exportDir, port });
  // A "server" that accepts connections and never says a word, until the guest connects to the
  // release port: from then on it is a proxy to ganesha, for the held connections too.
  const hungPort = await freePort();
  hung = createServer((socket) => (forwardTo ? forward(socket, forwardTo) : held.push(socket)));
  await new Promise<void>((ok) => hung?.listen(hungPort, '127.0.0.1', ok));
  const releasePort = await freePort();
  releaser = createServer((socket) => {
    forwardTo = port;
    for (const s of held.splice(0)) if (!s.destroyed) forward(s, port);
    socket.end('released\n');
  });
  await new Promise<void>((ok) => releaser?.listen(releasePort, '127.0.0.1', ok));

  // The EFS API the executable asks for this zone's mount target: ganesha, behind 10.0.2.2.
  efs = await FakeEfs.start();
  efs.addSubnet({ subnetId: 'subnet-0e2e0000000000001', availabilityZone: 'us-east-1a', ip: '10.0.2.2' });
  efs.addSubnet({ subnetId: 'subnet-0e2e0000000000002', availabilityZone: 'us-east-1b', ip: '10.9.9.9' });
  efs.addFileSystem({
    fileSystemId: FS_ID,
    mountTargets: [{ subnetId: 'subnet-0e2e0000000000002' }, { subnetId: 'subnet-0e2e0000000000001' }],
  });
  const efsPort = new URL(efs.url).port;

  // Installed as an operator does, for a node whose node binary is the guest's.
  const pluginDir = join(work, 'plugins');
  const install = await execa(
    'node',
    [
      '--no-warnings',
      join(PROJECT, 'bin/stowage.js'),
      'flexvolume',
      'install',
      '--dir',
      pluginDir,
      '--drivers',
      'nfs,efs',
      '--node',
      '/payload/bin/node',
    ],
    { reject: false, timeout: 60_000, stdin: 'ignore' },
  );
  if (install.exitCode !== 0) throw new Error(`stowage flexvolume install failed:\n${install.stderr}`);

  // The guest program needs nothing but node's own modules: one file, no node_modules on the disk.
  const app = join(work, 'app');
  await mkdir(app);
  await build({
    entryPoints: [join(PROJECT, 'test/e2e/nfs/flex-guest-program.ts')],
    outfile: join(app, 'flex-guest-program.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
  const nfsServer = { server: '10.0.2.2', mountOptions: `port=${port}` };
  const hungServer = { server: '10.0.2.2', export: '/export', mountOptions: `port=${hungPort}` };
  const plan: GuestPlan = {
    pluginDir: '/payload/plugins',
    kubeletDir: KUBELET_DIR,
    dataDir: DATA_DIR,
    // The test EFS endpoint wants credentials like AWS does; these are placeholders for it.
    env: { AWS_ACCESS_KEY_ID: 'AKIDGUEST', AWS_SECRET_ACCESS_KEY: 'guest-test-secret' },
    podA: POD_A,
    podB: POD_B,
    drivers: [
      { driver: 'nfs', pv: NFS_PV, options: { ...nfsServer, share: '/export', mode: '0750' } },
      {
        driver: 'efs',
        pv: EFS_PV,
        options: { fileSystemId: FS_ID, basePath: '/export', directoryPerms: '0750' },
      },
    ],
    hung: [
      // The volume's own deadline (mountTimeout), hit by the mount; kubelet's retry fails the same way.
      {
        label: 'mountTimeout',
        driver: 'nfs',
        pv: 'flex-hung',
        options: { ...hungServer, mountTimeout: '3s' },
        attempts: 2,
      },
      // The executable's last-resort deadline (flexvolume.callTimeoutMs), under a longer mountTimeout.
      {
        label: 'callTimeout',
        driver: 'nfs',
        pv: 'flex-hung-call',
        options: { ...hungServer, mountTimeout: '60s' },
        env: { STOWAGE_CONFIG: '/etc/stowage/call-deadline.yaml' },
        // kubelet retries; then the server comes back: nothing may mount behind the two Failures.
        attempts: 2,
        release: { port: releasePort, waitMs: 20_000 },
      },
    ],
    callTimeoutMs: 120_000,
  };
  await writeFile(join(app, 'plan.json'), JSON.stringify(plan));
  const etc = join(work, 'etc-stowage');
  await mkdir(etc);
  await writeFile(join(etc, 'config.yaml'), configYaml({ efsPort, ganeshaPort: port }));
  await writeFile(
    join(etc, 'call-deadline.yaml'),
    configYaml({ efsPort, ganeshaPort: port, callTimeoutMs: CALL_DEADLINE_MS }),
  );

  const kernel = await buildGuestKernel({ cacheDir: GUEST_CACHE });
  const payload = await buildPayloadDisk({
    dir: work,
    // /init links /payload/etc/* into /etc: the executable finds /etc/stowage/config.yaml itself.
    files: { plugins: pluginDir, app, 'etc/stowage': etc },
  });
  const t0 = Date.now();
  let consoleSoFar = '';
  guest = await runInGuest({
    kernel: kernel.kernel,
    initrd: kernel.initrd,
    payloadDisk: payload.image,
    command: ['/payload/bin/node', '/payload/app/flex-guest-program.mjs', '/payload/app/plan.json'],
    timeoutMs: 480_000,
    memoryMb: 1024,
    onConsole: (chunk) => {
      if (bootMs !== undefined) return;
      consoleSoFar += chunk;
      if (consoleSoFar.includes(BEGIN_MARKER)) bootMs = Date.now() - t0;
    },
  });
  const line = /RESULT (\{.*\})/.exec(guest.output)?.[1];
  if (guest.exitCode !== 0 || !line) {
    throw new Error(
      `the guest program failed (exit ${guest.exitCode}):\n${guest.console.split('\n').slice(-40).join('\n')}`,
    );
  }
  report = JSON.parse(line);
  const calls = [
    ...report.drivers.flatMap((d) => Object.entries(d.calls).map(([k, c]) => `${d.driver} ${k} ${c.ms} ms`)),
    ...report.hung.flatMap((h) => h.attempts.map((c, i) => `hung ${h.label}#${i + 1} ${c.ms} ms`)),
  ];
  console.log(
    `flexvolume guest: boot ${bootMs} ms, program ${report.ms} ms, total ${guest.durationMs} ms; payload ${payload.bytes} bytes\n  ${calls.join('\n  ')}`,
  );
}, 720_000);

afterAll(async () => {
  for (const s of held) s.destroy();
  for (const server of [releaser, hung]) {
    await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
  }
  await ganesha?.stop();
  await efs?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** The held client connection, joined to a new one to ganesha (its buffered bytes go first). */
function forward(client: Socket, port: number): void {
  const upstream = createConnection({ host: '127.0.0.1', port });
  held.push(client, upstream);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.pipe(upstream);
  upstream.pipe(client);
}

/** What kubelet demands of every reply: one JSON object on stdout+stderr, exit code per status. */
function reply(c: CallRecord): Record<string, unknown> {
  const what = `${c.args.slice(0, 2).join(' ')}: ${JSON.stringify(c.output)}`;
  expect(c.timedOut, what).toBe(false);
  expect(c.signal, what).toBeNull();
  expect(c.stderr, what).toBe('');
  let parsed: unknown;
  try {
    parsed = JSON.parse(c.output);
  } catch {
    throw new Error(`not exactly one JSON object: ${what}`);
  }
  expect(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed), what).toBe(true);
  const r = parsed as Record<string, unknown>;
  expect(['Success', 'Failure', 'Not supported'], what).toContain(r.status);
  expect(c.exitCode, what).toBe(r.status === 'Failure' ? 1 : 0);
  return r;
}

const driverReport = (driver: string): DriverReport => {
  const d = report.drivers.find((x) => x.driver === driver);
  if (!d) throw new Error(`the guest has no report for ${driver}`);
  return d;
};

const hungReport = (label: string): HungReport => {
  const h = report.hung.find((x) => x.label === label);
  if (!h) throw new Error(`the guest has no report for the hung case ${label}`);
  return h;
};

const at = (mounts: MountView[], path: string) => mounts.filter((m) => m.mountPoint === path);

function checkSequence(driver: 'nfs' | 'efs', pv: string) {
  const d = driverReport(driver);
  const ctx = () => `flexvolume.log tail:\n${report.logTail}`;
  expect(reply(d.calls.init)).toEqual({ status: 'Success', capabilities: CAPABILITIES });
  for (const k of ['mountA', 'mountARetry', 'mountB', 'unmountA', 'unmountARetry', 'unmountB'] as const) {
    expect(reply(d.calls[k]), `${k}\n${ctx()}`).toEqual({ status: 'Success' });
  }
  const source = `10.0.2.2:/export/${pv}`;
  const base = `${DATA_DIR}/volumes/${pv}`;
  // One kernel NFS mount under stowage's mount root, bind-mounted into each pod: A rw, B ro.
  expect(at(d.mountsWhileBoth, base)).toEqual([expect.objectContaining({ fsType: 'nfs4', source })]);
  const [a] = at(d.mountsWhileBoth, d.podDirA);
  const [b] = at(d.mountsWhileBoth, d.podDirB);
  expect(at(d.mountsWhileBoth, d.podDirA)).toHaveLength(1);
  expect(at(d.mountsWhileBoth, d.podDirB)).toHaveLength(1);
  expect(a).toMatchObject({ fsType: 'nfs4', source });
  expect(b).toMatchObject({ fsType: 'nfs4', source });
  expect(a?.options).toContain('rw');
  expect(b?.options).toContain('ro');
  expect(d.mountsWhileBoth.map((m) => m.mountPoint).sort()).toEqual([base, d.podDirA, d.podDirB].sort());

  const text = `written by pod A through stowage~${driver}\n`;
  expect(d.writeA).toEqual({ ok: true });
  expect(d.readB).toEqual({ ok: true, text });
  expect(d.writeB).toEqual({ ok: false, code: 'EROFS' });

  // A's unmount (and its retry) leaves B's view and the shared mount alone.
  expect(d.podDirAAfterUnmount).toEqual({ mounted: false, entries: [] });
  expect(d.rmdirA).toEqual({ ok: true });
  expect(d.mountsAfterUnmountA.map((m) => m.mountPoint).sort()).toEqual([base, d.podDirB].sort());
  expect(d.readBAfterUnmountA).toEqual({ ok: true, text });
  // After B, nothing: had the retried mount been counted twice, the NFS mount would remain.
  expect(d.mountsAfterUnmountB, ctx()).toEqual([]);
  expect(d.rmdirB).toEqual({ ok: true });
}

async function checkServerSide(pv: string) {
  const dir = join(exportDir, pv);
  const s = await stat(dir);
  expect(s.isDirectory()).toBe(true);
  expect(s.mode & 0o7777).toBe(0o750);
  expect(await readdir(dir)).toEqual(['hello.txt']);
  expect(await readFile(join(dir, 'hello.txt'), 'utf8')).toBe(
    `written by pod A through stowage~${pv === NFS_PV ? 'nfs' : 'efs'}\n`,
  );
}

describe('flexvolume nfs/efs in a qemu guest, run as kubelet runs it', () => {
  it('ran every step in the guest without an unexpected error', () => {
    expect(report.error).toBeUndefined();
    expect(report.drivers.map((d) => d.driver)).toEqual(['nfs', 'efs']);
  });

  it("ran the installed wrapper with the guest's node; the executable logged to its file, not to kubelet", async () => {
    for (const d of ['nfs', 'efs']) {
      const wrapper = await readFile(join(work, 'plugins', `stowage~${d}`, d), 'utf8');
      expect(wrapper).toMatch(/^#!\/bin\/sh\n/);
      expect(wrapper).toContain('\nnode=/payload/bin/node\n');
    }
    expect(report.logTail).toContain('"via":"flexvolume"');
    expect(report.logTail).toContain('flexvolume call done');
  });

  it('nfs: init, two pods (one ro) with retried mount and unmount, data shared, nothing left mounted', () => {
    checkSequence('nfs', NFS_PV);
  });

  it('nfs: created the volume directory on the server from the PV options, with pod A data only', async () => {
    await checkServerSide(NFS_PV);
  });

  it('efs: init, two pods (one ro) with retried mount and unmount, through the zone mount target', () => {
    checkSequence('efs', EFS_PV);
    expect(efs?.calls.filter((c) => c.operation === 'DescribeMountTargets').length).toBeGreaterThan(0);
    expect(efs?.calls.filter((c) => c.error !== undefined)).toEqual([]);
  });

  it('efs: created the volume directory under basePath on the mount target, with pod A data only', async () => {
    await checkServerSide(EFS_PV);
  });

  it('nfs: a mount against a server that never answers fails at mountTimeout, also when retried', () => {
    const h = hungReport('mountTimeout');
    expect(h.attempts).toHaveLength(2);
    for (const c of h.attempts) {
      expect(reply(c)).toEqual({
        status: 'Failure',
        message:
          'NFS server 10.0.2.2 did not answer within 3 s (mount of 10.0.2.2:/export); check that the server is up ' +
          'and reachable from this host, or raise the mountTimeout option',
      });
      // 3 s plus the executable's start under emulation; a bound, not a timing claim.
      expect(c.ms).toBeLessThan(60_000);
    }
    expect(h.mountsAfter).toEqual([]);
    expect(h.helpersAfter).toEqual([]);
  });

  it('nfs: a mount that outlives flexvolume.callTimeoutMs fails at that deadline, also when retried', () => {
    const h = hungReport('callTimeout');
    expect(h.attempts).toHaveLength(2);
    for (const c of h.attempts) {
      expect(reply(c)).toEqual({
        status: 'Failure',
        message:
          `stowage/nfs mount did not finish within ${CALL_DEADLINE_MS / 1000} s; kubelet retries it and the retry ` +
          'picks up where this one stopped (raise flexvolume.callTimeoutMs if the storage is that slow)',
      });
      expect(c.ms).toBeLessThan(60_000); // the volume's mountTimeout is 60 s: the call deadline ended it
    }
    expect(h.mountsAfter).toEqual([]);
  });

  it('nfs: a call ended by callTimeoutMs leaves no mount helper running that mounts once the server is back', () => {
    const h = hungReport('callTimeout');
    const late = h.afterRelease;
    expect(late?.released).toBe(true);
    // What kubelet was told failed must not happen later behind its back (and unrecorded).
    expect({
      helpersAfterFailure: h.helpersAfter,
      mountedOnceServerBack: late?.mounts.map((m) => `${m.source} on ${m.mountPoint} (${m.fsType})`),
      cleanedUpByTheTest: late?.cleaned,
    }).toEqual({ helpersAfterFailure: [], mountedOnceServerBack: [], cleanedUpByTheTest: [] });
  });

  it('left nothing of ours mounted in the guest, and no mount helper running', () => {
    expect(report.leftMounted).toEqual([]);
    expect(report.helpersAtEnd).toEqual([]);
  });
});
