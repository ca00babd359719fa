/**
 * Proves the NFS e2e harness end to end: `node --import tsx test/e2e/guest/smoke.ts`
 * (root; installs missing Debian packages). A real kernel NFSv4.1 client in a qemu guest mounts
 * the export of a userspace ganesha on the host's loopback, writes a file, loads better-sqlite3
 * from the payload, unmounts; the host then finds the file in the export directory.
 *
 * Env: STOWAGE_GUEST_CACHE (default /var/cache/stowage-test-guest), NFS_PORT (default a free
 * port), GUEST_VERBOSE=1 to stream the guest console.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ensureNfsPackages, freePort, type Ganesha, startGanesha } from '../nfs/ganesha.js';
import { buildGuestKernel, buildPayloadDisk, ensureGuestPackages } from './build.js';
import { runInGuest } from './run.js';

const PROJECT = resolve(import.meta.dirname, '../../..');
const CACHE = process.env.STOWAGE_GUEST_CACHE ?? '/var/cache/stowage-test-guest';

const GUEST_SCRIPT = `'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const [port, name, content] = process.argv.slice(2);
const t0 = Date.now();
fs.mkdirSync('/mnt', { recursive: true });
execFileSync('mount', ['-t', 'nfs4', '-o', 'vers=4.1,port=' + port, '10.0.2.2:/export', '/mnt'], { stdio: 'inherit', timeout: 30000 });
const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').find((l) => l.includes(' /mnt '));
console.log('mountinfo: ' + line);
fs.writeFileSync('/mnt/' + name, content);
const Database = require('/payload/app/node_modules/better-sqlite3');
const db = new Database(':memory:');
const version = db.prepare('select sqlite_version() as v').get().v;
db.close();
execFileSync('umount', ['/mnt'], { stdio: 'inherit', timeout: 30000 });
const tools = { mount: fs.realpathSync('/bin/mount'), helper: fs.realpathSync('/sbin/mount.nfs4') };
console.log('RESULT ' + JSON.stringify({ sqlite: version, fstype: line && line.split(' - ')[1].split(' ')[0], tools, ms: Date.now() - t0 }));
`;

async function timed<T>(what: string, fn: () => Promise<T>, times: Record<string, number>): Promise<T> {
  const t = Date.now();
  try {
    return await fn();
  } finally {
    times[what] = Date.now() - t;
  }
}

async function main(): Promise<void> {
  const times: Record<string, number> = {};
  await timed(
    'packages',
    async () => [...(await ensureNfsPackages()), ...(await ensureGuestPackages())],
    times,
  );

  const work = await mkdtemp(join(tmpdir(), 'stowage-guest-smoke-'));
  let ganesha: Ganesha | undefined;
  try {
    const exportDir = join(work, 'export');
    const port = process.env.NFS_PORT ? Number(process.env.NFS_PORT) : await freePort();
    ganesha = await timed('ganesha start', () => startGanesha({ exportDir, port }), times);

    const first = await timed('kernel+initrd build', () => buildGuestKernel({ cacheDir: CACHE }), times);
    const again = await timed(
      'kernel+initrd (cache hit)',
      () => buildGuestKernel({ cacheDir: CACHE }),
      times,
    );
    if (!again.cached || again.initrd !== first.initrd) throw new Error('second build was not a cache hit');

    const nm = join(PROJECT, 'node_modules');
    const payload = await timed(
      'payload disk',
      () =>
        buildPayloadDisk({
          dir: work,
          files: {
            'app/node_modules/better-sqlite3': join(nm, 'better-sqlite3'),
            'app/node_modules/bindings': join(nm, 'bindings'),
            'app/node_modules/file-uri-to-path': join(nm, 'file-uri-to-path'),
          },
          contents: { 'app/smoke.cjs': GUEST_SCRIPT },
        }),
      times,
    );

    const name = `hello-${randomBytes(4).toString('hex')}.txt`;
    const content = `written by the guest's kernel NFS client at ${new Date().toISOString()}\n`;
    const res = await timed(
      'boot+run+poweroff',
      () =>
        runInGuest({
          kernel: first.kernel,
          initrd: first.initrd,
          payloadDisk: payload.image,
          command: ['/payload/bin/node', '/payload/app/smoke.cjs', String(port), name, content],
          timeoutMs: 180_000,
          memoryMb: 1024,
          ...(process.env.GUEST_VERBOSE ? { onConsole: (c: string) => process.stdout.write(c) } : {}),
        }),
      times,
    );
    process.stdout.write(`--- guest output\n${res.output.trim()}\n---\n`);
    if (res.exitCode !== 0) {
      throw new Error(
        `guest command exited ${res.exitCode}; console:\n${res.console.split('\n').slice(-40).join('\n')}`,
      );
    }
    const result = /RESULT (\{.*\})/.exec(res.output)?.[1];
    if (!result) throw new Error('guest printed no RESULT line');
    const parsed = JSON.parse(result) as { sqlite: string; fstype: string };
    if (parsed.fstype !== 'nfs4') throw new Error(`/mnt was ${parsed.fstype}, not nfs4`);
    const onHost = await readFile(join(exportDir, name), 'utf8');
    if (onHost !== content)
      throw new Error(`export has ${JSON.stringify(onHost)}, expected ${JSON.stringify(content)}`);

    const server = ganesha;
    await timed('ganesha stop', () => server.stop(), times);
    console.log(
      JSON.stringify(
        {
          ok: true,
          kernel: first.kernelVersion,
          firstBuildWasCached: first.cached,
          payloadBytes: payload.bytes,
          sqlite: parsed.sqlite,
          nfsPort: port,
          timingsMs: times,
        },
        null,
        2,
      ),
    );
  } finally {
    await ganesha?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
