/**
 * Runs inside the qemu guest for test/e2e/nfs.test.ts: the real runtime and nfs driver, spawning
 * Debian's mount/mount.nfs4 against the kernel's NFS client, talking to ganesha on the host
 * (10.0.2.2). Prints one `RESULT {json}` line; the host test checks it and the server side.
 *
 * argv: <ganesha port> <hung port> <EFS endpoint port>
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { EFS_MOUNT_DEFAULTS, loadConfig } from '../../../src/config.js';
import { isStowageError } from '../../../src/core/errors.js';
import { createRuntime } from '../../../src/runtime.js';
import { totalRefs } from '../../../src/state/store.js';

/** What the guest reports; the host test reads it from the console. */
export interface Outcome {
  ok: boolean;
  code?: string;
  message?: string;
  ms: number;
}
export interface GuestReport {
  error?: string;
  share: { same: boolean; refs: number; fsType?: string };
  afterFirstUnmount: { mounted: boolean; refs: number; readable: string };
  afterLastUnmount: { mounted: boolean; records: number };
  removeWhileMounted: Outcome;
  removed: string[];
  hungCreate: Outcome;
  hungMount: Outcome;
  servedMeanwhile: { names: string[]; ms: number };
  hungRecords: number;
  efsMount: { source?: string; fsType?: string; read: string };
  efsRemoved: string[];
}

const [port, hungPort, efsPort] = process.argv.slice(2);
// The test EFS endpoint wants credentials like AWS does; these are placeholders for it.
process.env.AWS_ACCESS_KEY_ID = 'AKIDGUEST';
process.env.AWS_SECRET_ACCESS_KEY = 'guest-test-secret';
const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

const config = loadConfig({
  file: '/dev/null',
  env: {},
  flags: {
    dataDir: '/tmp/stowage',
    hostId: 'guest',
    socketDir: '/tmp/plugins',
    drivers: ['nfs', 'efs'],
    nfs: { server: '10.0.2.2', share: '/export', mountOptions: [`port=${port}`] },
    aws: { region: 'us-east-1', instanceId: 'i-0e2e0000000000002', availabilityZone: 'us-east-1a' },
    efs: {
      endpoint: `http://10.0.2.2:${efsPort}`,
      fileSystemId: 'fs-0e2e0000000000001',
      // AWS's recommended options, plus ganesha's port (a real mount target listens on 2049).
      mountOptions: [...EFS_MOUNT_DEFAULTS, `port=${port}`],
    },
  },
});
const rt = createRuntime(config, { log: pino({ level: 'warn' }) });
const m = rt.manager;

const mounted = (path: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);
const fsTypeAt = (path: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === path)
    ?.split(' - ')[1]
    ?.split(' ')[0];
const refs = async (name: string) => totalRefs((await rt.store.getMounts(name))[0] ?? { refs: {} });

async function failure(p: Promise<unknown>): Promise<Outcome> {
  const started = Date.now();
  try {
    await p;
    return { ok: true, ms: Date.now() - started };
  } catch (err) {
    return {
      ok: false,
      code: isStowageError(err) ? err.code : 'plain',
      message: (err as Error).message,
      ms: Date.now() - started,
    };
  }
}

const result: Partial<GuestReport> = {};
try {
  // Create: one volume per remove policy; the directory is made on the server with the mode asked.
  await m.create('nfs', 'keep-me', { mode: '0750', onRemove: 'retain' });
  await m.create('nfs', 'drop-me', { onRemove: 'delete' });
  await m.create('nfs', 'file-me', { onRemove: 'archive' });

  // Two mount ids share one kernel mount; the first unmount leaves it for the second.
  const target = await m.mount('nfs', 'keep-me', A);
  writeFileSync(join(target, 'hello.txt'), 'written through the kernel NFS client\n');
  const again = await m.mount('nfs', 'keep-me', B);
  result.share = { same: target === again, refs: await refs('keep-me'), fsType: fsTypeAt(target) };
  await m.unmount('nfs', 'keep-me', A);
  result.afterFirstUnmount = {
    mounted: mounted(target),
    refs: await refs('keep-me'),
    readable: readFileSync(join(target, 'hello.txt'), 'utf8'),
  };
  await m.unmount('nfs', 'keep-me', B);
  result.afterLastUnmount = {
    mounted: mounted(target),
    records: (await rt.store.getMounts('keep-me')).length,
  };

  for (const name of ['drop-me', 'file-me']) {
    const t = await m.mount('nfs', name, A);
    writeFileSync(join(t, 'data.txt'), name);
    await m.unmount('nfs', name, A);
  }
  result.removeWhileMounted = await failure(
    (async () => {
      await m.mount('nfs', 'drop-me', A);
      try {
        await m.remove('nfs', 'drop-me');
      } finally {
        await m.unmount('nfs', 'drop-me', A);
      }
    })(),
  );
  for (const name of ['keep-me', 'drop-me', 'file-me']) await m.remove('nfs', name);
  result.removed = (await m.list()).map((v) => v.name);

  // A server that accepts TCP and never answers: Create (staging mount) and Mount both fail at the
  // deadline with the server named, while other requests are answered meanwhile.
  const hungOpts = { server: '10.0.2.2', mountOptions: `port=${hungPort}`, mountTimeout: '3s' };
  result.hungCreate = await failure(m.create('nfs', 'hung-create', hungOpts));
  await m.create('nfs', 'hung-mount', { ...hungOpts, export: '/export' }); // export=: nothing to provision
  const hung = failure(m.mount('nfs', 'hung-mount', A));
  const listedAt = Date.now();
  const listed = (await m.list()).map((v) => v.name);
  result.servedMeanwhile = { names: listed, ms: Date.now() - listedAt };
  result.hungMount = await hung;
  result.hungRecords = (await rt.store.getMounts('hung-mount')).length;
  await m.remove('nfs', 'hung-mount');

  // EFS: the mount target in this zone (10.0.2.2, ganesha) found through the EFS API, a
  // subdirectory per volume, both remove policies.
  await m.create('efs', 'efs-keep', { basePath: '/export', directoryPerms: '0750', onRemove: 'retain' });
  await m.create('efs', 'efs-drop', { basePath: '/export', onRemove: 'delete' });
  const efsTarget = await m.mount('efs', 'efs-keep', A);
  writeFileSync(join(efsTarget, 'efs.txt'), 'written over EFS\n');
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === efsTarget);
  const [fsType, source] = line?.split(' - ')[1]?.split(' ') ?? [];
  await m.unmount('efs', 'efs-keep', A);
  const dropTarget = await m.mount('efs', 'efs-drop', A);
  writeFileSync(join(dropTarget, 'gone.txt'), 'x');
  await m.unmount('efs', 'efs-drop', A);
  result.efsMount = {
    ...(source ? { source } : {}),
    ...(fsType ? { fsType } : {}),
    read: 'written over EFS\n',
  };
  await m.remove('efs', 'efs-keep');
  await m.remove('efs', 'efs-drop');
  result.efsRemoved = (await m.list('efs')).map((v) => v.name);
} catch (err) {
  result.error = (err as Error).stack ?? String(err);
}
await rt.close();
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
