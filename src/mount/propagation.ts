import { readFile, readlink, realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { StowageError } from '../base/errors.js';
import { type MountEntry, parseMountInfo } from './mountinfo.js';

/**
 * Mount propagation when stowage runs in a container (its own mount namespace): a mount stowage
 * makes under the volumes directory reaches dockerd (in the host's namespace) only if the mount
 * holding that directory is shared with the host, e.g. a bind mount with `rshared` propagation.
 * With private or slave propagation every Mount would "succeed" and containers would get an empty
 * directory, so the daemon refuses to start instead.
 */

/** What the decision needs, read from /proc (or given by a test). */
export interface PropagationFacts {
  /** `readlink /proc/self/ns/mnt`: the daemon's mount namespace, e.g. `mnt:[4026531841]`. */
  ownNamespace: string;
  /** The same for the host's init (/proc/1 with pid: host); undefined when it cannot be read. */
  hostNamespace: string | undefined;
  /** The daemon's /proc/self/mountinfo. */
  mountInfo: string;
  /** The host init's mountinfo, when readable: whether the peer group reaches the host. */
  hostMountInfo?: string | undefined;
}

export type PropagationVerdict =
  /** Same namespace as the host's init, or the host's cannot be read (not in a container then). */
  | { ok: true; why: 'host namespace' | 'host namespace unknown' }
  /** Own namespace, and the directory's mount is shared; `warning` when it may not reach the host. */
  | { ok: true; why: 'shared'; mount: MountEntry; warning?: string }
  | { ok: false; mount: MountEntry | undefined; error: StowageError };

export interface PropagationCheckOptions {
  /** Whose view is checked: this process (default) or another pid (the path is resolved in ours). */
  pid?: number | 'self';
  /** The process in the host's mount namespace: 1, the host's init when the pid namespace is the host's. */
  hostPid?: number;
  /** The directory the fix binds (default: the checked path), e.g. the data directory holding it. */
  bindDir?: string;
}

/**
 * The mount that holds `path`: the longest mount point that is `path` or one of its parents; of
 * several mounts on one mount point, the last (the one on top).
 */
export function mountContaining(mounts: readonly MountEntry[], path: string): MountEntry | undefined {
  const wanted = resolve(path);
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const inside = m.mountPoint === '/' || wanted === m.mountPoint || wanted.startsWith(`${m.mountPoint}/`);
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** The decision from the facts alone; see checkMountPropagation. */
export function judgePropagation(path: string, facts: PropagationFacts, bindDir = path): PropagationVerdict {
  if (facts.hostNamespace === undefined) return { ok: true, why: 'host namespace unknown' };
  if (facts.hostNamespace === facts.ownNamespace) return { ok: true, why: 'host namespace' };
  const mount = mountContaining(parseMountInfo(facts.mountInfo), path);
  if (!mount) {
    return {
      ok: false,
      mount,
      error: new StowageError(
        'CONFIG',
        `cannot find the mount that holds the volumes directory ${path} in /proc/self/mountinfo; ` +
          'stowage runs in its own mount namespace and must check that its mounts reach dockerd',
      ),
    };
  }
  if (mount.propagation === 'shared') {
    const verdict: PropagationVerdict = { ok: true, why: 'shared', mount };
    if (facts.hostMountInfo !== undefined && mount.peerGroup !== undefined) {
      const onHost = parseMountInfo(facts.hostMountInfo).some((m) => m.peerGroup === mount.peerGroup);
      if (!onHost) {
        verdict.warning =
          `the volumes directory ${path} is on a shared mount (${mount.mountPoint}, peer group ${mount.peerGroup}), ` +
          "but no mount of the host's init is in that peer group: mounts stowage makes may be invisible to dockerd " +
          `unless dockerd runs in a namespace that shares it. ${fixHint(bindDir)}`;
      }
    }
    return verdict;
  }
  const propagation = mount.propagation ?? 'private';
  return {
    ok: false,
    mount,
    error: new StowageError(
      'CONFIG',
      `the volumes directory ${path} is on a mount with ${propagation} propagation (${mount.mountPoint}, ` +
        `in stowage's own mount namespace), so mounts stowage makes would be invisible to dockerd. ${fixHint(bindDir)}`,
      { details: { path, mountPoint: mount.mountPoint, propagation } },
    ),
  };
}

function fixHint(dir: string): string {
  return (
    `Bind ${dir} into the stowage container with shared propagation: in compose, \`- ${dir}:${dir}:rshared\` ` +
    `under volumes; with docker run, \`--mount type=bind,source=${dir},target=${dir},bind-propagation=rshared\`; ` +
    'in Kubernetes, `mountPropagation: Bidirectional`. ' +
    "The host's mount must itself be shared for that: `mount --make-rshared /` on the host, or a shared bind " +
    `of the directory (\`mount --bind ${dir} ${dir} && mount --make-rshared ${dir}\`).`
  );
}

/**
 * Reads the facts from /proc and judges them. The check applies only when the daemon's mount
 * namespace differs from the host's (see hostWitness), told by the namespace link or, when that is
 * not readable, by the mount tables; when neither can be read the daemon is taken to run on the
 * host. /.dockerenv is no evidence either way.
 */
export async function checkMountPropagation(
  path: string,
  opts: PropagationCheckOptions = {},
): Promise<PropagationVerdict> {
  const self = `/proc/${opts.pid ?? 'self'}`;
  const ownNamespace = await readlink(`${self}/ns/mnt`);
  const hostPid = opts.hostPid ?? (await hostWitness(self, ownNamespace));
  const host = `/proc/${hostPid}`;
  let hostNamespace = await readlink(`${host}/ns/mnt`).catch(() => undefined);
  const hostMountInfo = await readFile(`${host}/mountinfo`, 'utf8').catch(() => undefined);
  const mountInfo = await readFile(`${self}/mountinfo`, 'utf8');
  if (hostNamespace === undefined && hostMountInfo !== undefined) {
    // The namespace link needs ptrace access to the host's process, which a container with only
    // CAP_SYS_ADMIN (compose's cap_add, a managed plugin) lacks, as does root on hosts whose init
    // holds capabilities root has not; its mount table is readable by all. Mount ids are unique
    // across the kernel and each mount lives in one namespace: two tables that share no id are two
    // namespaces.
    hostNamespace = sharesAMount(mountInfo, hostMountInfo)
      ? ownNamespace
      : `mount namespace of pid ${hostPid} (no mount in common)`;
  }
  if (hostNamespace === undefined || hostNamespace === ownNamespace) {
    return judgePropagation(path, { ownNamespace, hostNamespace, mountInfo: '' });
  }
  const facts: PropagationFacts = { ownNamespace, hostNamespace, mountInfo, hostMountInfo };
  return judgePropagation(await resolveExisting(path), facts, opts.bindDir ?? path);
}

/** Whether two mountinfo tables list a mount with the same id (field 1), i.e. one namespace. */
export function sharesAMount(a: string, b: string): boolean {
  const ids = (text: string) =>
    text
      .split('\n')
      .map((line) => line.split(' ', 1)[0])
      .filter(Boolean);
  const inB = new Set(ids(b));
  return ids(a).some((id) => inB.has(id));
}

/**
 * A process in the host's mount namespace: the host's init (/proc/1 with pid: host) when it can be
 * read. Some hosts hide PID 1 (EACCES even to root; seen on the test VMs); then the nearest
 * ancestor in another mount namespace is the witness: a container's parent (containerd-shim, a
 * managed plugin's runtime) lives in the host's namespace. Falls back to 1 (then unreadable: the
 * daemon is taken to run on the host).
 */
async function hostWitness(self: string, ownNamespace: string): Promise<number> {
  if (await readlink('/proc/1/ns/mnt').catch(() => undefined)) return 1;
  let pid = await parentOf(self);
  for (let hops = 0; pid !== undefined && pid > 1 && hops < 64; hops++) {
    const ns = await readlink(`/proc/${pid}/ns/mnt`).catch(() => undefined);
    if (ns !== undefined && ns !== ownNamespace) return pid;
    pid = await parentOf(`/proc/${pid}`);
  }
  return 1;
}

/** The parent pid from /proc/<pid>/stat (field 4, after the parenthesised command name). */
async function parentOf(proc: string): Promise<number | undefined> {
  const stat = await readFile(`${proc}/stat`, 'utf8').catch(() => '');
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
}

/** `path` with symlinks resolved as far as it exists (the volumes directory may not exist yet). */
async function resolveExisting(path: string): Promise<string> {
  const abs = resolve(path);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(await resolveExisting(parent), basename(abs));
  }
}
