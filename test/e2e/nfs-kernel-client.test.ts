import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeEfs } from '../fakes/aws/efs-endpoint.js';
import { buildGuestKernel, buildPayloadDisk, ensureGuestPackages } from './guest/build.js';
import { type GuestResult, runInGuest } from './guest/run.js';
import { type DyingProxy, startDyingProxy } from './nfs/dying-proxy.js';
import { ensureNfsPackages, freePort, type Ganesha, startGanesha } from './nfs/ganesha.js';
import type { GuestReport } from './nfs/guest-program.js';

/**
 * The nfs and efs drivers' real mount path against a real NFS server and a real kernel NFS
 * client, reached the way Docker users reach it: the real `stowage daemon` in a small qemu guest
 * (Debian's cloud kernel, software emulation; the host kernel has no NFS client), driven over its
 * unix sockets with the Docker volume-plugin protocol, against nfs-ganesha on the host's loopback.
 * See test/e2e/guest/ and test/e2e/nfs/guest-program.ts for what runs there. Every outcome is then
 * checked on the server and in the daemon's own log.
 */
const PROJECT = resolve(import.meta.dirname, '../..');
const GUEST_CACHE = '/var/cache/stowage-test-guest';
// Development-only packages the guest has no use for; leaving them out halves the disk image.
const NOT_IN_GUEST = new Set([
  '.bin',
  '@biomejs',
  'typescript',
  '@rolldown',
  'rolldown',
  'lightningcss',
  'lightningcss-linux-x64-gnu',
  'vitest',
  '@vitest',
  'vite',
]);

let work: string;
let exportDir: string;
let ganesha: Ganesha | undefined;
let hung: Server | undefined;
let efs: FakeEfs | undefined;
let dying: DyingProxy | undefined;
const held: Socket[] = [];
let guest: GuestResult;
let result: GuestReport;

beforeAll(async () => {
  await ensureNfsPackages();
  await ensureGuestPackages();
  work = await mkdtemp(join(tmpdir(), 'stowage-nfs-e2e-'));
  exportDir = join(work, 'export');
  const port = await freePort();
  ganesha = await startGanesha({ exportDir, port });
  // A "server" that accepts connections and never says a word.
  const hungPort = await freePort();
  hung = createServer((socket) => held.push(socket));
  await new Promise<void>((ok) => hung?.listen(hungPort, '127.0.0.1', ok));

  // The EFS API the guest asks for this zone's mount target, which is ganesha behind 10.0.2.2.
  efs = await FakeEfs.start();
  efs.addSubnet({ subnetId: 'subnet-0e2e0000000000001', availabilityZone: 'us-east-1a', ip: '10.0.2.2' });
  efs.addSubnet({ subnetId: 'subnet-0e2e0000000000002', availabilityZone: 'us-east-1b', ip: '10.9.9.9' });
  efs.addFileSystem({
    fileSystemId: 'fs-0e2e0000000000001',
    mountTargets: [{ subnetId: 'subnet-0e2e0000000000002' }, { subnetId: 'subnet-0e2e0000000000001' }],
  });
  const efsPort = new URL(efs.url).port;
  // ganesha behind a proxy the guest can silence: a server that dies under a mounted volume.
  dying = await startDyingProxy(port);

  const kernel = await buildGuestKernel({ cacheDir: GUEST_CACHE });
  const files: Record<string, string> = {};
  // The compiled daemon (bin/, dist/: the global setup builds it) and the sources the program imports.
  for (const dir of [
    'bin',
    'dist',
    'src',
    'drivers',
    'test/e2e/nfs/guest-program.ts',
    'test/helpers/plugin-client.ts',
    'package.json',
  ])
    files[`app/${dir}`] = join(PROJECT, dir);
  for (const entry of await readdir(join(PROJECT, 'node_modules'))) {
    if (!NOT_IN_GUEST.has(entry)) files[`app/node_modules/${entry}`] = join(PROJECT, 'node_modules', entry);
  }
  const payload = await buildPayloadDisk({ dir: work, files });
  guest = await runInGuest({
    kernel: kernel.kernel,
    initrd: kernel.initrd,
    payloadDisk: payload.image,
    command: [
      '/payload/bin/node',
      '--no-warnings',
      '--import',
      'file:///payload/app/node_modules/tsx/dist/loader.mjs',
      '/payload/app/test/e2e/nfs/guest-program.ts',
      String(port),
      String(hungPort),
      efsPort,
      String(dying.port),
      String(dying.cutPort),
    ],
    timeoutMs: 240_000,
    memoryMb: 1024,
  });
  const line = /RESULT (\{.*\})/.exec(guest.output)?.[1];
  if (guest.exitCode !== 0 || !line) {
    throw new Error(
      `the guest program failed (exit ${guest.exitCode}):\n${guest.console.split('\n').slice(-40).join('\n')}`,
    );
  }
  result = JSON.parse(line);
  console.log(`guest run ${guest.durationMs} ms; in the guest: ${JSON.stringify(result.phases)}`);
}, 420_000);

afterAll(async () => {
  for (const s of held) s.destroy();
  await new Promise<void>((ok) => (hung ? hung.close(() => ok()) : ok()));
  await dying?.stop();
  await ganesha?.stop();
  await efs?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const GUEST = '/tmp/stowage/volumes';

describe('stowage daemon in a guest with a kernel NFS client, driven over its plugin sockets, against nfs-ganesha', () => {
  it('ran every step in the guest without an unexpected error, and the daemon stopped cleanly', () => {
    expect(result.error).toBeUndefined();
    expect(result.activate).toEqual({ Implements: ['VolumeDriver'], Err: '' });
    expect(result.daemonExit).toBe(0);
  });

  it('shares one NFSv4 mount between two mount ids and keeps it for the second after the first unmounts', () => {
    expect(result.share).toEqual({ same: true, refs: 2, fsType: 'nfs4', path: `${GUEST}/keep-me` });
    expect(result.afterFirstUnmount).toEqual({
      mounted: true,
      refs: 1,
      readable: 'written through the kernel NFS client\n',
    });
    expect(result.afterLastUnmount).toEqual({ mounted: false, mounts: 0, getMountpoint: '' });
  });

  it('refused Remove while the volume was mounted', () => {
    expect(result.removeWhileMounted.ok).toBe(false);
    expect(result.removeWhileMounted.message ?? '').toMatch(
      /^volume drop-me is in use by 1 mount on host guest/,
    );
    expect(result.refusals).toContainEqual(expect.objectContaining({ op: 'Remove', code: 'IN_USE' }));
  });

  it('kept the retained directory on the server, with its mode and the data written', async () => {
    const s = await stat(join(exportDir, 'keep-me'));
    expect(s.isDirectory()).toBe(true);
    expect(s.mode & 0o7777).toBe(0o750);
    expect(await readFile(join(exportDir, 'keep-me', 'hello.txt'), 'utf8')).toBe(
      'written through the kernel NFS client\n',
    );
  });

  it('deleted the directory of the delete volume and archived the archive volume with its data', async () => {
    const entries = await readdir(exportDir);
    expect(entries).not.toContain('drop-me');
    expect(entries).not.toContain('file-me');
    const archived = entries.filter((e) => e.startsWith('archived-file-me-'));
    expect(archived).toHaveLength(1);
    expect(archived[0]).toMatch(/^archived-file-me-\d{8}T\d{6}Z$/);
    expect(await readFile(join(exportDir, archived[0]!, 'data.txt'), 'utf8')).toBe('file-me');
    expect(result.removed).toEqual([]);
  });

  it('fails Create against a server that never answers within mountTimeout, naming the server', () => {
    expect(result.hungCreate.ok).toBe(false);
    expect(result.hungCreate.message ?? '').toMatch(/^NFS server 10\.0\.2\.2 did not answer within 3 s/);
    expect(result.hungCreate.ms).toBeLessThan(30_000); // a bound far above the 3 s deadline, not a timing claim
    expect(result.refusals).toContainEqual(expect.objectContaining({ op: 'Create', code: 'TIMEOUT' }));
  });

  it('fails Mount against a server that never answers with the clear message, and keeps serving meanwhile', () => {
    expect(result.hungMount.ok).toBe(false);
    expect(result.hungMount.message).toBe(
      'NFS server 10.0.2.2 did not answer within 3 s (mount of 10.0.2.2:/export); check that the server is up ' +
        'and reachable from this host, or raise the mountTimeout option',
    );
    expect(result.servedMeanwhile.names).toEqual(['hung-mount']);
    expect(result.servedMeanwhile.ms).toBeLessThan(result.hungMount.ms);
    expect(result.hungMounts).toBe(0);
  });

  it("answers a Mount of an export the server does not have with NOT_FOUND in mount's own words, logged without a stack", () => {
    expect(result.missingExport.ok).toBe(false);
    expect(result.missingExport.message).toMatch(
      new RegExp(
        `^mount of 10\\.0\\.2\\.2:/export/missing on ${GUEST}/no-such-export failed \\(exit 32\\): mount\\.nfs4: .*No such file or directory; ` +
          'NFS server 10\\.0\\.2\\.2 does not export /export/missing: check the share or export option',
      ),
    );
    expect(result.missingExportMounted).toBe(false);
    const logged = result.refusals.filter((r) => r.op === 'Mount' && r.err?.includes('/export/missing'));
    expect(logged).toEqual([expect.objectContaining({ code: 'NOT_FOUND', level: 30, hasStack: false })]);
    expect(result.refusals.filter((r) => r.hasStack || r.code === 'INTERNAL')).toEqual([]);
  });

  it('mounts an EFS volume through the mount target of its zone and applies both remove policies', async () => {
    expect(result.efsMount).toEqual({
      source: '10.0.2.2:/export/efs-keep',
      fsType: 'nfs4',
      read: 'written over EFS\n',
    });
    const s = await stat(join(exportDir, 'efs-keep'));
    expect(s.mode & 0o7777).toBe(0o750);
    expect(await readFile(join(exportDir, 'efs-keep', 'efs.txt'), 'utf8')).toBe('written over EFS\n');
    expect(await readdir(exportDir)).not.toContain('efs-drop');
    expect(result.efsRemoved).toEqual([]);
    expect(efs?.calls.filter((c) => c.operation === 'DescribeMountTargets').length).toBeGreaterThan(0);
  });

  it("ends an Unmount against a server that died within about the volume's mountTimeout (6 s), not 30 s", async () => {
    const { unmount, mounted, mounts, removed } = result.deadServer;
    console.log(`Unmount with the server dead took ${unmount.ms} ms (mountTimeout 6 s)`);
    expect(dying?.cut).toBe(true);
    expect(unmount).toMatchObject({ ok: true });
    // umount waits at most 6 s, then the lazy detach at most 6 s: under emulation, well below 30 s.
    expect(unmount.ms).toBeLessThan(20_000);
    expect({ mounted, mounts, removed: removed.ok }).toEqual({ mounted: false, mounts: 0, removed: true });
    expect(await readFile(join(exportDir, 'dies', 'before.txt'), 'utf8')).toBe(
      'written before the server died\n',
    );
  });
});
