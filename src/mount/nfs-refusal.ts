import { type ErrorCode, StowageError } from '../base/errors.js';
import { toolWords } from './exec.js';

/**
 * An NFS mount that mount(8) refused is, nearly always, the user's to fix (a server down, an
 * export missing, a client not allowed), not a bug of stowage: it gets a code the user can act on
 * and a message naming the server, the export and mount's own words (the runner's message, which
 * already says server:export and what mount printed, plus what to do), so the adapters answer it
 * like any refusal and log no stack. The patterns are the texts of Debian's mount.nfs and of
 * busybox mount (the errno strings both print), matched on the C locale the runner sets.
 */
interface Refusal {
  re: RegExp;
  code: ErrorCode;
  hint: (server: string, exportPath: string) => string;
}

const REFUSALS: readonly Refusal[] = [
  {
    re: /connection refused|no route to host|network is unreachable|host is down|connection timed out|timed out/i,
    code: 'UNAVAILABLE',
    hint: (s) => `check that NFS server ${s} is running and reachable from this host (address and port)`,
  },
  {
    re: /failed to resolve server|name or service not known|temporary failure in name resolution/i,
    code: 'UNAVAILABLE',
    hint: (s) => `check the server name ${s}, or give its IP address`,
  },
  {
    re: /no such file or directory/i,
    code: 'NOT_FOUND',
    hint: (s, e) =>
      `NFS server ${s} does not export ${e}: check the share or export option against its exports`,
  },
  {
    re: /access denied|permission denied/i,
    code: 'PERMISSION_DENIED',
    hint: (s, e) =>
      `NFS server ${s} does not let this host mount ${e}: check the export's client list and security options`,
  },
  {
    re: /operation not permitted|only root/i,
    code: 'PERMISSION_DENIED',
    hint: () => 'mounting needs root (CAP_SYS_ADMIN); run stowage as root',
  },
  {
    re: /protocol not supported|version .*not supported|program not registered/i,
    code: 'INVALID_ARGUMENT',
    hint: (s) =>
      `NFS server ${s} does not speak this NFS version or transport: set the nfsVersion option to one it serves`,
  },
  {
    re: /incorrect mount option|invalid argument/i,
    code: 'INVALID_ARGUMENT',
    hint: () => 'check the mountOptions of the volume and nfs/efs.mountOptions in the config',
  },
  {
    re: /unknown filesystem type|helper program|no such device/i,
    code: 'UNAVAILABLE',
    hint: () => 'this host cannot mount NFS: install nfs-common and make sure the kernel has its nfs module',
  },
];

/**
 * The error for an NFS mount of `source` (server:/path) that exited nonzero. `err` is what the
 * runner threw (commandFailed); anything else (a timeout, a missing mount binary) is returned as
 * it is.
 */
export function nfsMountRefusal(source: string, err: unknown): unknown {
  if (!(err instanceof StowageError) || typeof err.details.exitCode !== 'number') return err;
  const colon = source.indexOf(':');
  const server = colon > 0 ? source.slice(0, colon) : source;
  const exportPath = colon > 0 ? source.slice(colon + 1) : '';
  const words =
    toolWords({ stdout: String(err.details.stdout ?? ''), stderr: String(err.details.stderr ?? '') }) ||
    `no output, exit ${err.details.exitCode}`;
  const match = REFUSALS.find((r) => r.re.test(words));
  // The runner's message already names server:export, the mountpoint and mount's own words.
  const hint = match
    ? match.hint(server, exportPath)
    : `check NFS server ${server} and that it exports ${exportPath}`;
  return new StowageError(match?.code ?? 'UNAVAILABLE', `${err.message}; ${hint}`, {
    cause: err,
    details: { server, export: exportPath, mountSaid: words },
  });
}
