/**
 * Runs inside the qemu guest for test/e2e/nfs-kernel-client.test.ts: starts the real `stowage
 * daemon` (the compiled CLI, as an operator runs it) with the nfs and efs drivers, and drives it
 * the way dockerd does, over its unix sockets with the Docker volume-plugin protocol. The daemon
 * spawns Debian's mount/mount.nfs4 against the kernel's NFS client, talking to ganesha on the host
 * (10.0.2.2). Prints one `RESULT {json}` line; the host test checks it and the server side.
 *
 * argv: <ganesha port> <hung port> <EFS endpoint port> <dying proxy port> <proxy cut port>
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EFS_MOUNT_DEFAULTS } from '../../../src/config.js';
import { callPlugin } from '../../helpers/plugin-client.js';

/** One plugin call as the caller saw it: the reply's Err, or what it answered. */
export interface Outcome {
  ok: boolean;
  message?: string;
  ms: number;
}
/** A line the daemon logged for a request it refused or failed. */
export interface RefusalLog {
  op?: string;
  code?: string;
  err?: string;
  level: number;
  msg: string;
  hasStack: boolean;
}
export interface GuestReport {
  error?: string;
  activate: unknown;
  share: { same: boolean; refs: number; fsType?: string; path: string };
  afterFirstUnmount: { mounted: boolean; refs: number; readable: string };
  afterLastUnmount: { mounted: boolean; mounts: number; getMountpoint: string };
  removeWhileMounted: Outcome;
  removed: string[];
  hungCreate: Outcome;
  hungMount: Outcome;
  servedMeanwhile: { names: string[]; ms: number };
  hungMounts: number;
  missingExport: Outcome;
  missingExportMounted: boolean;
  efsMount: { source?: string; fsType?: string; read: string };
  efsRemoved: string[];
  deadServer: { unmount: Outcome; mounted: boolean; mounts: number; removed: Outcome };
  daemonExit: number | null;
  /** How long each part took in the guest (ms), for the run time the host test prints. */
  phases: Record<string, number>;
  refusals: RefusalLog[];
}

const [port, hungPort, efsPort, dyingPort, cutPort] = process.argv.slice(2);
const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const DATA = '/tmp/stowage';
const SOCKETS = '/tmp/plugins';
const LOG = '/tmp/stowage-daemon.log';
// Generous for software emulation; the daemon's own deadlines are what the checks are about.
const CALL_MS = 120_000;

function startDaemon(): ChildProcess {
  const config = {
    hostId: 'guest',
    dataDir: DATA,
    socketDir: SOCKETS,
    drivers: ['nfs', 'efs'],
    nfs: { server: '10.0.2.2', share: '/export', mountOptions: [`port=${port}`] },
    aws: { region: 'us-east-1', instanceId: 'i-0e2e0000000000002', availabilityZone: 'us-east-1a' },
    efs: {
      endpoint: `http://10.0.2.2:${efsPort}`,
      fileSystemId: 'fs-0e2e0000000000001',
      // AWS's recommended options, plus ganesha's port (a real mount target listens on 2049).
      mountOptions: [...EFS_MOUNT_DEFAULTS, `port=${port}`],
    },
  };
  writeFileSync('/tmp/stowage.json', JSON.stringify(config)); // JSON is YAML
  return spawn(
    process.execPath,
    [
      '--no-warnings',
      '/payload/app/bin/stowage.js',
      '--config',
      '/tmp/stowage.json',
      '--log-level',
      'info',
      '--log-file',
      LOG,
      'daemon',
    ],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
      // The test EFS endpoint wants credentials like AWS does; these are placeholders for it.
      env: { ...process.env, AWS_ACCESS_KEY_ID: 'AKIDGUEST', AWS_SECRET_ACCESS_KEY: 'guest-test-secret' },
    },
  );
}

const sock = (driver: string) => join(SOCKETS, `stowage-${driver}.sock`);

async function waitForSocket(daemon: ChildProcess, driver: string): Promise<unknown> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (existsSync(sock(driver))) {
      const r = await callPlugin(sock(driver), 'Plugin.Activate', '', 5000).catch(() => undefined);
      if (r) return r.body;
    }
    if (daemon.exitCode !== null) throw new Error(`stowage daemon exited with ${daemon.exitCode}`);
    if (Date.now() > deadline) throw new Error(`the ${driver} socket did not answer within 90 s`);
    await sleep(100);
  }
}

/** A Docker plugin call; a reply with Err set is thrown as an Error with that message. */
async function call(driver: string, endpoint: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await callPlugin(sock(driver), `VolumeDriver.${endpoint}`, body, CALL_MS);
  if (typeof r.body.Err === 'string' && r.body.Err !== '') throw new Error(r.body.Err);
  return r.body;
}
const create = (driver: string, Name: string, Opts: Record<string, string> = {}) =>
  call(driver, 'Create', { Name, Opts });
const mount = async (driver: string, Name: string, ID: string) =>
  String((await call(driver, 'Mount', { Name, ID })).Mountpoint);
const unmount = (driver: string, Name: string, ID: string) => call(driver, 'Unmount', { Name, ID });
const remove = (driver: string, Name: string) => call(driver, 'Remove', { Name });
const names = async (driver: string) =>
  ((await call(driver, 'List', {})).Volumes as { Name: string }[]).map((v) => v.Name);
async function get(driver: string, Name: string) {
  const v = (await call(driver, 'Get', { Name })).Volume as {
    Mountpoint: string;
    Status: { mounts: { refs: number }[] };
  };
  return { mountpoint: v.Mountpoint, mounts: v.Status.mounts };
}
const refs = async (name: string) => (await get('nfs', name)).mounts[0]?.refs ?? 0;

const mountinfo = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
const mounted = (path: string) => mountinfo().some((l) => l.split(' ')[4] === path);
const lineOf = (path: string) =>
  mountinfo()
    .find((l) => l.split(' ')[4] === path)
    ?.split(' - ')[1]
    ?.split(' ');

async function outcome(p: Promise<unknown>): Promise<Outcome> {
  const started = Date.now();
  try {
    await p;
    return { ok: true, ms: Date.now() - started };
  } catch (err) {
    return { ok: false, message: (err as Error).message, ms: Date.now() - started };
  }
}

/** Tells the host's proxy in front of ganesha to drop its connections and answer nothing more. */
function killServer(): Promise<void> {
  return new Promise((ok, fail) => {
    const s = connect(Number(cutPort), '10.0.2.2');
    s.on('data', () => s.end());
    s.on('close', () => ok());
    s.on('error', fail);
  });
}

const result: Partial<GuestReport> = {};
const phases: Record<string, number> = {};
let phaseStart = Date.now();
const phase = (name: string) => {
  phases[name] = Date.now() - phaseStart;
  phaseStart = Date.now();
};
const daemon = startDaemon();
try {
  result.activate = await waitForSocket(daemon, 'nfs');
  await waitForSocket(daemon, 'efs');
  phase('daemonStart');

  // Create: one volume per remove policy; the directory is made on the server with the mode asked.
  await create('nfs', 'keep-me', { mode: '0750', onRemove: 'retain' });
  await create('nfs', 'drop-me', { onRemove: 'delete' });
  await create('nfs', 'file-me', { onRemove: 'archive' });

  // Two mount ids share one kernel mount; the first unmount leaves it for the second.
  const target = await mount('nfs', 'keep-me', A);
  writeFileSync(join(target, 'hello.txt'), 'written through the kernel NFS client\n');
  const again = await mount('nfs', 'keep-me', B);
  result.share = {
    same: target === again,
    refs: await refs('keep-me'),
    fsType: lineOf(target)?.[0],
    path: String((await call('nfs', 'Path', { Name: 'keep-me' })).Mountpoint),
  };
  await unmount('nfs', 'keep-me', A);
  result.afterFirstUnmount = {
    mounted: mounted(target),
    refs: await refs('keep-me'),
    readable: readFileSync(join(target, 'hello.txt'), 'utf8'),
  };
  await unmount('nfs', 'keep-me', B);
  const after = await get('nfs', 'keep-me');
  result.afterLastUnmount = {
    mounted: mounted(target),
    mounts: after.mounts.length,
    getMountpoint: after.mountpoint,
  };

  for (const name of ['drop-me', 'file-me']) {
    const t = await mount('nfs', name, A);
    writeFileSync(join(t, 'data.txt'), name);
    await unmount('nfs', name, A);
  }
  await mount('nfs', 'drop-me', A);
  result.removeWhileMounted = await outcome(remove('nfs', 'drop-me'));
  await unmount('nfs', 'drop-me', A);
  for (const name of ['keep-me', 'drop-me', 'file-me']) await remove('nfs', name);
  result.removed = await names('nfs');
  phase('nfsLifecycle');

  // A server that accepts TCP and never answers: Create (staging mount) and Mount both fail at the
  // deadline with the server named, while other requests are answered meanwhile.
  const hungOpts = { server: '10.0.2.2', mountOptions: `port=${hungPort}`, mountTimeout: '3s' };
  result.hungCreate = await outcome(create('nfs', 'hung-create', hungOpts));
  await create('nfs', 'hung-mount', { ...hungOpts, export: '/export' }); // export=: nothing to provision
  const hung = outcome(mount('nfs', 'hung-mount', A));
  await sleep(500); // the Mount is under way (the guest is slow; its mount waits 3 s)
  const listedAt = Date.now();
  const listed = await names('nfs');
  result.servedMeanwhile = { names: listed, ms: Date.now() - listedAt };
  result.hungMount = await hung;
  result.hungMounts = (await get('nfs', 'hung-mount')).mounts.length;
  await remove('nfs', 'hung-mount');
  phase('hungServer');

  // An export the server does not have: the server's refusal, in mount's words, to the caller.
  await create('nfs', 'no-such-export', { export: '/export/missing' });
  result.missingExport = await outcome(mount('nfs', 'no-such-export', A));
  result.missingExportMounted = mounted(join(DATA, 'volumes', 'no-such-export'));
  await remove('nfs', 'no-such-export');
  phase('missingExport');

  // EFS: the mount target in this zone (10.0.2.2, ganesha) found through the EFS API, a
  // subdirectory per volume, both remove policies.
  await create('efs', 'efs-keep', { basePath: '/export', directoryPerms: '0750', onRemove: 'retain' });
  await create('efs', 'efs-drop', { basePath: '/export', onRemove: 'delete' });
  const efsTarget = await mount('efs', 'efs-keep', A);
  writeFileSync(join(efsTarget, 'efs.txt'), 'written over EFS\n');
  const [fsType, source] = lineOf(efsTarget) ?? [];
  await unmount('efs', 'efs-keep', A);
  const dropTarget = await mount('efs', 'efs-drop', A);
  writeFileSync(join(dropTarget, 'gone.txt'), 'x');
  await unmount('efs', 'efs-drop', A);
  result.efsMount = {
    ...(source ? { source } : {}),
    ...(fsType ? { fsType } : {}),
    read: 'written over EFS\n',
  };
  await remove('efs', 'efs-keep');
  await remove('efs', 'efs-drop');
  result.efsRemoved = await names('efs');
  phase('efs');

  // Last, as it leaves a lazily detached mount behind: the server dies under a mounted volume.
  // Unmount is bounded by the volume's mountTimeout (6 s) per step, not the 30 s general deadline.
  await create('nfs', 'dies', { mountOptions: `port=${dyingPort}`, mountTimeout: '6s' });
  const dyingTarget = await mount('nfs', 'dies', A);
  writeFileSync(join(dyingTarget, 'before.txt'), 'written before the server died\n');
  await killServer();
  const unmounted = await outcome(unmount('nfs', 'dies', A));
  result.deadServer = {
    unmount: unmounted,
    mounted: mounted(dyingTarget),
    mounts: (await get('nfs', 'dies')).mounts.length,
    removed: await outcome(remove('nfs', 'dies')), // retain: nothing to do on the dead server
  };
  phase('deadServer');
} catch (err) {
  result.error = (err as Error).stack ?? String(err);
}
daemon.kill('SIGTERM');
const stopWait = new AbortController();
const exited = await Promise.race([
  new Promise<number | null>((ok) =>
    daemon.exitCode !== null ? ok(daemon.exitCode) : daemon.once('exit', (code) => ok(code)),
  ),
  // Aborted once the daemon is gone: a pending timer would keep the guest up for its whole 30 s.
  sleep(30_000, undefined, { signal: stopWait.signal }).then(
    () => 'timeout' as const,
    () => 'timeout' as const,
  ),
]);
stopWait.abort();
result.daemonExit = exited === 'timeout' ? -1 : exited;
phase('daemonStop');
result.phases = phases;
result.refusals = (existsSync(LOG) ? readFileSync(LOG, 'utf8').split('\n') : [])
  .filter(Boolean)
  .map((l) => JSON.parse(l) as Record<string, unknown>)
  .filter((l) => l.msg === 'request refused' || l.msg === 'request failed')
  .map((l) => ({
    ...(typeof l.op === 'string' ? { op: l.op } : {}),
    ...(typeof l.code === 'string' ? { code: l.code } : {}),
    ...(typeof l.err === 'string' ? { err: l.err } : {}),
    level: Number(l.level),
    msg: String(l.msg),
    hasStack: 'stack' in l,
  }));
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
