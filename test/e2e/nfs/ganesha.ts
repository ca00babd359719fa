import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { aptEnsure } from '../guest/apt.js';

/**
 * A real NFSv4 server for e2e tests: nfs-ganesha (userspace, VFS FSAL) bound to 127.0.0.1 only,
 * v4 only (no rpcbind, no NLM, no rquota), one RW export with no root squash at pseudo path
 * /export. See shared/reference/testbed.md. A qemu guest reaches it as 10.0.2.2:<port>.
 */

export const GANESHA_BIN = '/usr/bin/ganesha.nfsd';
/** Where the VFS FSAL plugin lives; its absence makes ganesha start but fail every export. */
const GANESHA_VFS = '/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so';

/**
 * Installs nfs-ganesha + its VFS FSAL when missing (apt-get update first, bounded). nfs-ganesha
 * pulls in nfs-common and rpcbind as dependencies; Debian's policy-rc.d keeps them from starting
 * here (no init system), and ganesha does not need rpcbind for v4.
 */
export async function ensureNfsPackages(timeoutMs = 600_000): Promise<string[]> {
  return aptEnsure({ [GANESHA_BIN]: 'nfs-ganesha', [GANESHA_VFS]: 'nfs-ganesha-vfs' }, timeoutMs);
}

export interface GaneshaOptions {
  /** Directory to export (created if missing). */
  exportDir: string;
  /** TCP port on 127.0.0.1; must be free. Use 2049 or `freePort()`. */
  port: number;
  /** Where config, log, pid file and recovery dir go; default a fresh temp dir removed by stop(). */
  workDir?: string;
  /** How long to wait for the port to accept; default 30 s. */
  readyTimeoutMs?: number;
  /** NFSv4 lease; default 10 s (short, so a crashed client's state expires fast). */
  leaseSeconds?: number;
}

export interface Ganesha {
  port: number;
  /** The export's NFSv4 pseudo path: mount `<host>:/export`. */
  pseudo: '/export';
  logFile: string;
  configFile: string;
  pid: number;
  /** SIGTERM, SIGKILL after `graceMs` (default 10 s); removes the temp work dir. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export function ganeshaConfig(o: {
  exportDir: string;
  port: number;
  recoveryDir: string;
  lease: number;
}): string {
  return `NFS_CORE_PARAM {
  Bind_addr = 127.0.0.1;
  NFS_Port = ${o.port};
  Protocols = 4;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
}
NFSV4 {
  Graceless = true;
  Only_Numeric_Owners = true;
  Lease_Lifetime = ${o.lease};
  RecoveryBackend = fs;
  RecoveryRoot = "${o.recoveryDir}";
}
EXPORT {
  Export_Id = 1;
  Path = "${o.exportDir}";
  Pseudo = /export;
  Protocols = 4;
  Transports = TCP;
  Access_Type = RW;
  Squash = No_Root_Squash;
  SecType = sys;
  FSAL { Name = VFS; }
}
`;
}

export async function startGanesha(opts: GaneshaOptions): Promise<Ganesha> {
  if (!existsSync(GANESHA_BIN)) throw new Error(`${GANESHA_BIN} is missing: call ensureNfsPackages() first`);
  const exportDir = resolve(opts.exportDir);
  await mkdir(exportDir, { recursive: true });
  if (!(await portIsFree(opts.port))) throw new Error(`127.0.0.1:${opts.port} is already in use`);

  const ownWorkDir = opts.workDir === undefined;
  const workDir = opts.workDir ?? (await mkdtemp(join(tmpdir(), 'stowage-ganesha-')));
  for (const p of [exportDir, workDir]) {
    if (/["\n\\]/.test(p)) throw new Error(`path not usable in a ganesha config: ${JSON.stringify(p)}`);
  }
  const recoveryDir = join(workDir, 'recovery');
  await mkdir(recoveryDir, { recursive: true });
  const configFile = join(workDir, 'ganesha.conf');
  const logFile = join(workDir, 'ganesha.log');
  const pidFile = join(workDir, 'ganesha.pid');
  await writeFile(
    configFile,
    ganeshaConfig({ exportDir, port: opts.port, recoveryDir, lease: opts.leaseSeconds ?? 10 }),
  );

  const child = execa(
    GANESHA_BIN,
    ['-F', '-f', configFile, '-L', logFile, '-p', pidFile, '-N', 'NIV_EVENT'],
    {
      reject: false,
      stdin: 'ignore',
      stdout: { file: join(workDir, 'stdout.log') },
      stderr: { file: join(workDir, 'stderr.log') },
      // execa kills it if this process exits without calling stop().
      cleanup: true,
    },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn ${GANESHA_BIN}`);
  let exited = false;
  const done = child.then((r) => {
    exited = true;
    return r;
  });

  let stopped: Promise<void> | undefined;
  const stop = (graceMs = 10_000): Promise<void> => {
    stopped ??= (async () => {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await done;
        clearTimeout(timer);
      }
      if (ownWorkDir) await rm(workDir, { recursive: true, force: true });
    })();
    return stopped;
  };

  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const deadline = Date.now() + readyTimeoutMs;
  for (let delay = 10; ; delay = Math.min(delay * 2, 500)) {
    if (exited) {
      const r = await done;
      const log = await logTail(workDir, logFile);
      await stop();
      throw new Error(`ganesha.nfsd exited during startup (exit ${r.exitCode ?? r.signal}):\n${log}`);
    }
    // The log line proves it is *our* ganesha answering (portIsFree checked nobody else was).
    if (
      (await canConnect(opts.port, 1000)) &&
      (await readFile(logFile, 'utf8').catch(() => '')).includes('NFS SERVER INITIALIZED')
    ) {
      break;
    }
    if (Date.now() > deadline) {
      const log = await logTail(workDir, logFile);
      await stop();
      throw new Error(
        `ganesha.nfsd did not accept on 127.0.0.1:${opts.port} within ${readyTimeoutMs} ms:\n${log}`,
      );
    }
    await sleep(delay);
  }
  return { port: opts.port, pseudo: '/export', logFile, configFile, pid, stop };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? res(port) : rej(new Error('no port'))));
    });
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

function canConnect(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((res) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const finish = (ok: boolean) => {
      sock.destroy();
      res(ok);
    };
    sock.setTimeout(timeoutMs, () => finish(false));
    sock.once('connect', () => finish(true));
    sock.once('error', () => finish(false));
  });
}

async function logTail(workDir: string, logFile: string): Promise<string> {
  const parts: string[] = [];
  for (const f of [logFile, join(workDir, 'stderr.log')]) {
    const text = await readFile(f, 'utf8').catch(() => '');
    if (text.trim()) parts.push(`--- ${f}\n${text.trim().split('\n').slice(-20).join('\n')}`);
  }
  return parts.join('\n') || '(no log output)';
}
