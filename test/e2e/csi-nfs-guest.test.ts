import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSI_PROTO_PATH } from '../../csi/proto/load.js';
import { ESM_BUNDLE_BANNER } from '../../scripts/esm-bundle-banner.mjs';
import { EFS_MOUNT_DEFAULTS } from '../../src/config.js';
import { FakeEfs } from '../fakes/aws/efs-endpoint.js';
import type {
  CsiDriverReport,
  CsiGuestPlan,
  CsiGuestReport,
  MountView,
  RpcRecord,
} from './csi/guest-program.js';
import { BEGIN_MARKER, buildGuestKernel, buildPayloadDisk, ensureGuestPackages } from './guest/build.js';
import { runInGuest } from './guest/run.js';
import { ensureNfsPackages, freePort, type Ganesha, startGanesha } from './nfs/ganesha.js';

/**
 * The CSI plugin for nfs and efs on a node with a real kernel NFS client: the plugin (`stowage csi
 * --mode all`, bundled with its SQLite addon) runs in a qemu guest, driven over its unix socket by
 * a grpc-js client built from our csi.proto, in the order external-provisioner and kubelet call
 * it, every call repeated, the plugin killed (SIGKILL) and restarted twice in the middle. nfs
 * mounts nfs-ganesha on the host; efs asks the FakeEfs API for this zone's mount target, which is
 * ganesha too. The guest records; this file judges. One boot for both drivers.
 */
const PROJECT = resolve(import.meta.dirname, '../..');
const GUEST_CACHE = '/var/cache/stowage-test-guest';
const POD_A = '3c9d1b7e-5a4f-4e21-9b0d-7f6e5d4c3b2a';
const POD_B = '8e7f6a5b-4c3d-4b2a-8f1e-0d9c8b7a6f5e';
const KUBELET_DIR = '/var/lib/kubelet';
const DATA_DIR = '/var/lib/stowage';
const NFS_NAME = 'pvc-2f0c6d1e-csi-nfs';
const EFS_NAME = 'pvc-7a3b9e4d-csi-efs';
const FS_ID = 'fs-0e2e0000000000003';
const GRPC = { OK: 0, INVALID_ARGUMENT: 3, NOT_FOUND: 5, ALREADY_EXISTS: 6 };

let work: string;
let exportDir: string;
let ganesha: Ganesha | undefined;
let efs: FakeEfs | undefined;
let report: CsiGuestReport;

/** The server bundle: the CSI command's code, its lazily loaded chunks, the addon and the proto. */
async function bundleServer(dir: string): Promise<void> {
  const require = createRequire(import.meta.url);
  await build({
    entryPoints: { 'csi-server': join(PROJECT, 'test/e2e/csi/guest-server.ts') },
    bundle: true,
    platform: 'node',
    mainFields: ['module', 'main'],
    target: 'node20',
    format: 'esm',
    splitting: true,
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    logLevel: 'warning',
    banner: { js: ESM_BUNDLE_BANNER },
  });
  const addon = join(
    dirname(require.resolve('better-sqlite3/package.json')),
    'build/Release/better_sqlite3.node',
  );
  await copyFile(addon, join(dir, 'better_sqlite3.node'));
  await copyFile(CSI_PROTO_PATH, join(dir, 'csi.proto'));
}

beforeAll(async () => {
  await ensureNfsPackages();
  await ensureGuestPackages();
  work = await mkdtemp(join(tmpdir(), 'stowage-csi-nfs-guest-'));
  exportDir = join(work, 'export');
  const port = await freePort();
  ganesha = await startGanesha({ exportDir, port });
  efs = await FakeEfs.start();
  efs.addSubnet({ subnetId: 'subnet-0e2e0000000000011', availabilityZone: 'us-east-1a', ip: '10.0.2.2' });
  efs.addFileSystem({ fileSystemId: FS_ID, mountTargets: [{ subnetId: 'subnet-0e2e0000000000011' }] });

  const app = join(work, 'app');
  await mkdir(app);
  await bundleServer(join(app, 'server'));
  await build({
    entryPoints: [join(PROJECT, 'test/e2e/csi/guest-program.ts')],
    outfile: join(app, 'csi-guest-program.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
  });
  await copyFile(CSI_PROTO_PATH, join(app, 'csi.proto'));

  const plan: CsiGuestPlan = {
    serverBundle: '/payload/app/server/csi-server.mjs',
    protoPath: '/payload/app/csi.proto',
    kubeletDir: KUBELET_DIR,
    dataDir: DATA_DIR,
    socketDir: '/run/stowage-csi',
    logFile: '/var/log/stowage-csi.log',
    // The test EFS endpoint wants credentials like AWS does; these are placeholders for it.
    env: { AWS_ACCESS_KEY_ID: 'AKIDGUEST', AWS_SECRET_ACCESS_KEY: 'guest-test-secret' },
    podA: POD_A,
    podB: POD_B,
    drivers: [
      {
        driver: 'nfs',
        name: NFS_NAME,
        parameters: { server: '10.0.2.2', share: '/export', mountOptions: `port=${port}`, mode: '0750' },
      },
      {
        driver: 'efs',
        name: EFS_NAME,
        parameters: { fileSystemId: FS_ID, basePath: '/export', directoryPerms: '0750' },
      },
    ],
  };
  await writeFile(join(app, 'plan.json'), JSON.stringify(plan));
  const etc = join(work, 'etc-stowage');
  await mkdir(etc);
  await writeFile(
    join(etc, 'config.yaml'),
    `${JSON.stringify(
      {
        hostId: 'guest-node',
        dataDir: DATA_DIR,
        log: { level: 'debug', file: plan.logFile },
        aws: { region: 'us-east-1', instanceId: 'i-0e2e0000000000003', availabilityZone: 'us-east-1a' },
        efs: {
          endpoint: `http://10.0.2.2:${new URL(efs.url).port}`,
          mountOptions: [...EFS_MOUNT_DEFAULTS, `port=${port}`],
        },
      },
      null,
      2,
    )}\n`,
  );

  const kernel = await buildGuestKernel({ cacheDir: GUEST_CACHE });
  const payload = await buildPayloadDisk({ dir: work, files: { app, 'etc/stowage': etc } });
  const t0 = Date.now();
  let bootMs: number | undefined;
  let consoleSoFar = '';
  const guest = await runInGuest({
    kernel: kernel.kernel,
    initrd: kernel.initrd,
    payloadDisk: payload.image,
    command: ['/payload/bin/node', '/payload/app/csi-guest-program.mjs', '/payload/app/plan.json'],
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
      `the guest program failed (exit ${guest.exitCode}):\n${guest.console.split('\n').slice(-60).join('\n')}`,
    );
  }
  report = JSON.parse(line);
  const calls = report.drivers.flatMap((d) =>
    Object.entries(d.calls).map(([k, c]) => `${d.driver} ${k} ${c.ms} ms`),
  );
  console.log(
    `CSI guest: boot ${bootMs} ms, program ${report.ms} ms, total ${guest.durationMs} ms; payload ${payload.bytes} bytes\n  ${calls.join('\n  ')}`,
  );
}, 720_000);

afterAll(async () => {
  await ganesha?.stop();
  await efs?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const driverReport = (driver: string): CsiDriverReport => {
  const d = report.drivers.find((x) => x.driver === driver);
  if (!d) throw new Error(`the guest has no report for ${driver}\n${report.error ?? ''}\n${report.logTail}`);
  return d;
};

const at = (mounts: MountView[], path: string) => mounts.filter((m) => m.mountPoint === path);

function ok(r: RpcRecord | undefined, what: string): Record<string, unknown> {
  expect(r, what).toBeDefined();
  expect({ what, ok: r?.ok, code: r?.code, details: r?.details }).toEqual({
    what,
    ok: true,
    code: undefined,
    details: undefined,
  });
  return r?.reply ?? {};
}

function failed(r: RpcRecord | undefined, code: number, what: string): string {
  expect({ what, ok: r?.ok, code: r?.code }).toEqual({ what, ok: false, code });
  return r?.details ?? '';
}

function checkSequence(driver: 'nfs' | 'efs', name: string) {
  const d = driverReport(driver);
  const c = d.calls;
  const plugin = `${driver}.csi.stowage.io`;
  expect(ok(c.info, 'GetPluginInfo')).toMatchObject({ name: plugin });
  expect(ok(c.nodeInfo, 'NodeGetInfo')).toMatchObject({ nodeId: 'guest-node' });
  const nodeCaps = (ok(c.nodeCaps, 'NodeGetCapabilities').capabilities as { rpc: { type: string } }[]).map(
    (x) => x.rpc.type,
  );
  expect(nodeCaps).toContain('STAGE_UNSTAGE_VOLUME');
  const ctlCaps = (
    ok(c.controllerCaps, 'ControllerGetCapabilities').capabilities as { rpc: { type: string } }[]
  ).map((x) => x.rpc.type);
  expect(ctlCaps).toContain('CREATE_DELETE_VOLUME');
  expect(ctlCaps).not.toContain('PUBLISH_UNPUBLISH_VOLUME');

  const created = ok(c.create, 'CreateVolume').volume as { volumeId: string; capacityBytes: string };
  expect(created.volumeId).toBe(name);
  expect(created.capacityBytes).toBe('0'); // a share's capacity is unknown
  expect((ok(c.createAgain, 'CreateVolume again').volume as { volumeId: string }).volumeId).toBe(name);
  failed(c.createOther, GRPC.ALREADY_EXISTS, 'CreateVolume, same name, other parameters');

  for (const k of [
    'stage',
    'stageAgain',
    'publishA',
    'publishAAgain',
    'publishB',
    'unpublishA',
    'unpublishAAgain',
  ]) {
    ok(c[k], k);
  }
  for (const k of ['unpublishB', 'unstage', 'unstageAgain', 'delete', 'deleteAgain']) ok(c[k], k);
  expect(d.restarts).toHaveLength(2);

  const source = `10.0.2.2:/export/${name}`;
  const base = `${DATA_DIR}/volumes/${name}`;
  // Staged: one kernel NFS mount under stowage's mount root, bound at kubelet's staging path.
  expect(at(d.mountsStaged, base)).toEqual([expect.objectContaining({ fsType: 'nfs4', source })]);
  expect(at(d.mountsStaged, d.staging)).toEqual([expect.objectContaining({ fsType: 'nfs4', source })]);
  // Two pods after a restart of the plugin: the same one NFS mount, bound at each target (B read-only).
  expect(d.mountsWhileBoth.map((m) => m.mountPoint).sort()).toEqual(
    [base, d.staging, d.targetA, d.targetB].sort(),
  );
  expect(at(d.mountsWhileBoth, d.targetA)[0]?.options).toContain('rw');
  expect(at(d.mountsWhileBoth, d.targetB)[0]?.options).toContain('ro');
  const text = `written by pod A through ${plugin}\n`;
  expect(d.writeA).toEqual({ ok: true });
  expect(d.readB).toEqual({ ok: true, text });
  expect(d.writeB).toEqual({ ok: false, code: 'EROFS' });

  // A's unpublish (and its retry) removes A's target only; B reads on through the next restart.
  expect(d.targetAExistsAfterUnpublish).toBe(false);
  expect(d.mountsAfterUnpublishA.map((m) => m.mountPoint).sort()).toEqual(
    [base, d.staging, d.targetB].sort(),
  );
  expect(d.readBAfterRestart).toEqual({ ok: true, text });
  // After B and the unstage: nothing of ours mounted.
  expect(d.mountsAtEnd).toEqual([]);

  const stats = ok(c.statsA, 'NodeGetVolumeStats') as { usage: { unit: string; total: string }[] };
  expect(stats.usage.map((u) => u.unit).sort()).toEqual(['BYTES', 'INODES']);
  expect(Number(stats.usage.find((u) => u.unit === 'BYTES')?.total)).toBeGreaterThan(0);

  // The spec's negative cases.
  expect(failed(c.publishOutside, GRPC.INVALID_ARGUMENT, 'NodePublish outside kubelet')).toContain(
    '/tmp/elsewhere',
  );
  failed(c.stageUnknown, GRPC.NOT_FOUND, 'NodeStage of an unknown volume');
  failed(c.stageNoCapability, GRPC.INVALID_ARGUMENT, 'NodeStage without a capability');
  failed(c.publishNoVolumeId, GRPC.INVALID_ARGUMENT, 'NodePublish without a volume id');
}

async function checkServerSide(name: string) {
  const dir = join(exportDir, name);
  const s = await stat(dir);
  expect(s.isDirectory()).toBe(true);
  expect(s.mode & 0o7777).toBe(0o750);
  // The default remove policy keeps the data (docs/drivers.md): DeleteVolume forgot the volume only.
  expect(await readdir(dir)).toEqual(['hello.txt']);
  expect(await readFile(join(dir, 'hello.txt'), 'utf8')).toBe(
    `written by pod A through ${name.endsWith('nfs') ? 'nfs' : 'efs'}.csi.stowage.io\n`,
  );
}

describe('CSI nfs/efs in a qemu guest with the kernel NFS client, driven as the sidecars and kubelet drive it', () => {
  it('ran every step in the guest without an unexpected error', () => {
    expect(report.error, report.logTail).toBeUndefined();
    expect(report.drivers.map((d) => d.driver)).toEqual(['nfs', 'efs']);
  });

  it('nfs: provision, stage, two pods (one ro) across two plugin crashes, unpublish, unstage, delete', () => {
    checkSequence('nfs', NFS_NAME);
  });

  it('nfs: the volume directory on the server, with pod A data only', async () => {
    await checkServerSide(NFS_NAME);
  });

  it('efs: the same sequence through the zone mount target', () => {
    checkSequence('efs', EFS_NAME);
    expect(efs?.calls.filter((c) => c.operation === 'DescribeMountTargets').length).toBeGreaterThan(0);
  });

  it('efs: the volume directory under basePath, with pod A data only', async () => {
    await checkServerSide(EFS_NAME);
  });
});
