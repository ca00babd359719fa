import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isStowageError } from '../../src/base/errors.js';
import { parseMountInfo } from '../../src/mount/mountinfo.js';
import {
  checkMountPropagation,
  judgePropagation,
  mountContaining,
  type PropagationFacts,
  type PropagationVerdict,
  sharesAMount,
} from '../../src/mount/propagation.js';

/**
 * The start-up check that mounts stowage makes in its own mount namespace (a container) reach
 * dockerd: the decision over mountinfo fixtures, then real mount namespaces made with unshare(1).
 */

const HOST_NS = 'mnt:[4026531841]';
const CONTAINER_NS = 'mnt:[4026532400]';
const VOLUMES = '/var/lib/stowage/volumes';

// The host: a systemd host, whose mounts are shared (peer group 1 for the root filesystem).
const HOST_MOUNTINFO = [
  '22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro',
  '23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw',
].join('\n');

// A container's view: overlay root (Docker makes it private), /proc, and one line for the bind
// of /var/lib/stowage (or none) whose optional fields differ by the propagation asked for.
function containerMountInfo(bindOptional: string | undefined): string {
  return [
    '900 850 0:70 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w',
    '901 900 0:72 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
    ...(bindOptional === undefined
      ? []
      : [`910 900 254:1 /var/lib/stowage /var/lib/stowage rw,relatime ${bindOptional}- ext4 /dev/vda1 rw`]),
    // A volume stowage mounted: inside the volumes directory, it does not hold it.
    '920 910 7:0 / /var/lib/stowage/volumes/db rw,relatime shared:401 - ext4 /dev/loop0 rw',
  ].join('\n');
}

function inContainer(bindOptional: string | undefined, hostMountInfo?: string): PropagationFacts {
  return {
    ownNamespace: CONTAINER_NS,
    hostNamespace: HOST_NS,
    mountInfo: containerMountInfo(bindOptional),
    hostMountInfo,
  };
}

function refused(v: PropagationVerdict) {
  if (v.ok) throw new Error(`expected a refusal, got ${JSON.stringify(v)}`);
  return v;
}

describe('mountContaining', () => {
  const mounts = parseMountInfo(
    [
      '1 0 254:1 / / rw shared:1 - ext4 /dev/vda1 rw',
      '2 1 254:1 /srv /var/lib rw shared:1 - ext4 /dev/vda1 rw',
      '3 2 0:40 / /var/lib/stowage-other rw - tmpfs tmpfs rw',
      '4 2 0:41 / /var/lib/stowage rw - tmpfs tmpfs rw',
      // Mounted over the previous one: this one is on top.
      '5 2 0:42 / /var/lib/stowage rw shared:5 - tmpfs tmpfs rw',
      '6 5 0:43 / /var/lib/stowage/volumes/my\\040vol rw - tmpfs tmpfs rw',
    ].join('\n'),
  );
  const at = (path: string) => mountContaining(mounts, path)?.majorMinor;

  it('is the longest mount point that is the path or a parent of it, the top one of a stack', () => {
    expect(at('/var/lib/stowage/volumes')).toBe('0:42');
    expect(at('/var/lib/stowage')).toBe('0:42');
    expect(at('/var/lib/stowage/')).toBe('0:42');
    // A sibling whose name starts the same is not a parent.
    expect(at('/var/lib/stowage-other/x')).toBe('0:40');
    expect(at('/var/lib/stowagex')).toBe('254:1');
    expect(mountContaining(mounts, '/var/lib/stowagex')?.mountPoint).toBe('/var/lib');
    expect(at('/etc')).toBe('254:1');
    // Escaped mount points are compared decoded.
    expect(at('/var/lib/stowage/volumes/my vol/data')).toBe('0:43');
  });

  it('finds nothing in an empty table', () => {
    expect(mountContaining([], '/x')).toBeUndefined();
  });
});

describe('judgePropagation', () => {
  it('accepts anything in the host init’s namespace, or when that namespace cannot be read', () => {
    const facts = inContainer(''); // private bind: would be refused in a container
    expect(judgePropagation(VOLUMES, { ...facts, ownNamespace: HOST_NS })).toEqual({
      ok: true,
      why: 'host namespace',
    });
    expect(judgePropagation(VOLUMES, { ...facts, hostNamespace: undefined })).toEqual({
      ok: true,
      why: 'host namespace unknown',
    });
  });

  it('accepts a shared bind (compose `:rshared`) whose peer group the host has', () => {
    const v = judgePropagation(VOLUMES, inContainer('shared:1 ', HOST_MOUNTINFO));
    expect(v).toMatchObject({
      ok: true,
      why: 'shared',
      mount: { mountPoint: '/var/lib/stowage', peerGroup: 1 },
    });
    expect(v).not.toHaveProperty('warning');
    // Without the host's mount table (not readable) the peer group is not questioned.
    expect(judgePropagation(VOLUMES, inContainer('shared:1 '))).not.toHaveProperty('warning');
  });

  it('accepts, with a warning, a shared mount whose peer group is not on the host', () => {
    // E.g. a namespace made shared by itself (unshare --propagation shared): peers only of its own.
    const v = judgePropagation(
      VOLUMES,
      inContainer('shared:77 master:1 ', HOST_MOUNTINFO),
      '/var/lib/stowage',
    );
    expect(v.ok).toBe(true);
    expect(v.ok && v.why === 'shared' && v.warning).toMatch(
      /^the volumes directory \/var\/lib\/stowage\/volumes is on a shared mount \(\/var\/lib\/stowage, peer group 77\), but no mount of the host's init is in that peer group/,
    );
  });

  it('refuses a private bind (Docker’s default) with what to change', () => {
    const v = refused(judgePropagation(VOLUMES, inContainer(''), '/var/lib/stowage'));
    expect(isStowageError(v.error, 'CONFIG')).toBe(true);
    expect(v.mount?.mountPoint).toBe('/var/lib/stowage');
    expect(v.error.message).toBe(
      'the volumes directory /var/lib/stowage/volumes is on a mount with private propagation ' +
        "(/var/lib/stowage, in stowage's own mount namespace), so mounts stowage makes would be invisible to dockerd. " +
        'Bind /var/lib/stowage into the stowage container with shared propagation: in compose, ' +
        '`- /var/lib/stowage:/var/lib/stowage:rshared` under volumes; with docker run, ' +
        '`--mount type=bind,source=/var/lib/stowage,target=/var/lib/stowage,bind-propagation=rshared`; ' +
        'in Kubernetes, `mountPropagation: Bidirectional`. ' +
        "The host's mount must itself be shared for that: `mount --make-rshared /` on the host, or a shared bind " +
        'of the directory (`mount --bind /var/lib/stowage /var/lib/stowage && mount --make-rshared /var/lib/stowage`).',
    );
    expect(v.error.details).toEqual({
      path: VOLUMES,
      mountPoint: '/var/lib/stowage',
      propagation: 'private',
    });
  });

  it('refuses a slave bind (`:rslave`): the host’s mounts come in, ours do not go out', () => {
    const v = refused(judgePropagation(VOLUMES, inContainer('master:1 ', HOST_MOUNTINFO)));
    expect(v.error.message).toMatch(
      /^the volumes directory \/var\/lib\/stowage\/volumes is on a mount with slave propagation \(\/var\/lib\/stowage,/,
    );
    // Without a bindDir the hint binds the checked directory itself.
    expect(v.error.message).toContain('`- /var/lib/stowage/volumes:/var/lib/stowage/volumes:rshared`');
  });

  it('refuses when the directory is not bound at all (on the container’s own root)', () => {
    const v = refused(judgePropagation(VOLUMES, inContainer(undefined)));
    expect(v.mount?.mountPoint).toBe('/');
    expect(v.error.code).toBe('CONFIG');
  });

  it('refuses when no mount holds the directory (an empty mount table)', () => {
    const v = refused(judgePropagation(VOLUMES, { ...inContainer(''), mountInfo: '' }));
    expect(v.mount).toBeUndefined();
    expect(v.error.code).toBe('CONFIG');
  });
});

const run = promisify(execFile);

describe('checkMountPropagation in real mount namespaces (unshare)', () => {
  let dir: string;
  let sharedDir: string;
  let bound = false;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-propagation-'));
    sharedDir = join(dir, 'shared');
    await mkdir(join(sharedDir, 'volumes'), { recursive: true });
    // What the host side of `-v dir:dir:rshared` needs: a shared mount holding the directory.
    await run('mount', ['--bind', sharedDir, sharedDir]);
    bound = true;
    await run('mount', ['--make-shared', sharedDir]);
  });

  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await new Promise((resolve) => (c.exitCode !== null ? resolve(undefined) : c.once('exit', resolve)));
    }
  });

  afterAll(async () => {
    if (bound) await run('umount', [sharedDir]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A process in a new mount namespace made by `unshare` (nested when given several), ready. */
  async function inNamespace(...propagations: string[]): Promise<number> {
    const args = propagations.flatMap((p) => ['unshare', '--mount', '--propagation', p]);
    const child = spawn(args[0]!, [...args.slice(1), 'sleep', '60'], { stdio: 'ignore' });
    children.push(child);
    const pid = child.pid!;
    const ours = await readlink('/proc/self/ns/mnt');
    const deadline = Date.now() + 5000;
    for (;;) {
      // unshare execs sleep once its namespace and propagation are set up.
      const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
      const ns = await readlink(`/proc/${pid}/ns/mnt`).catch(() => ours);
      if (comm.trim() === 'sleep' && ns !== ours) return pid;
      if (Date.now() > deadline) throw new Error(`unshare ${propagations.join(' ')} did not start`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('accepts this process itself (the host namespace, or one whose host init cannot be read)', async () => {
    expect(await checkMountPropagation(join(dir, 'volumes'))).toMatchObject({ ok: true });
  });

  it('refuses a namespace whose mounts are private, naming the mount and the fix', async () => {
    const pid = await inNamespace('private');
    const v = refused(await checkMountPropagation(join(sharedDir, 'volumes'), { pid, hostPid: process.pid }));
    expect(v.mount?.mountPoint).toBe(sharedDir);
    expect(v.mount?.propagation).toBe('private');
    expect(v.error.code).toBe('CONFIG');
    expect(v.error.message).toContain(`is on a mount with private propagation (${sharedDir},`);
  });

  it('accepts a namespace that shares the mount with the host (what `:rshared` gives)', async () => {
    const pid = await inNamespace('unchanged');
    const v = await checkMountPropagation(join(sharedDir, 'volumes'), { pid, hostPid: process.pid });
    expect(v).toMatchObject({ ok: true, why: 'shared', mount: { mountPoint: sharedDir } });
    expect(v).not.toHaveProperty('warning');
  });

  it('warns about a namespace that is shared only with itself', async () => {
    // The outer namespace cuts propagation from ours; the inner one makes every mount shared anew.
    const pid = await inNamespace('private', 'shared');
    const v = await checkMountPropagation(join(sharedDir, 'volumes'), { pid, hostPid: process.pid });
    expect(v).toMatchObject({ ok: true, why: 'shared', mount: { mountPoint: sharedDir } });
    expect(v.ok && v.why === 'shared' && v.warning).toMatch(
      /no mount of the host's init is in that peer group/,
    );
  });

  it('takes a namespace it cannot read for the host’s (no /proc/1 evidence, no /.dockerenv guess)', async () => {
    const pid = await inNamespace('private');
    const v = await checkMountPropagation(join(sharedDir, 'volumes'), { pid, hostPid: 999_999_999 });
    expect(v).toEqual({ ok: true, why: 'host namespace unknown' });
  });
});

describe('sharesAMount (the namespace test when /proc/<pid>/ns/mnt cannot be read)', () => {
  const host = [
    '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '23 22 0:5 / /dev rw shared:2 - devtmpfs udev rw',
  ].join('\n');
  it('says one namespace when a mount id appears in both tables', () => {
    expect(sharesAMount(host, '23 22 0:5 / /dev rw shared:2 - devtmpfs udev rw')).toBe(true);
  });
  it('says two namespaces when no id is shared (a container has its own copies)', () => {
    const container = [
      '610 520 0:90 / / rw - overlay overlay rw',
      '611 610 0:5 / /dev rw - devtmpfs udev rw',
    ].join('\n');
    expect(sharesAMount(host, container)).toBe(false);
    expect(sharesAMount(host, '')).toBe(false);
  });
  it('sees a real new mount namespace as different from its parent', async () => {
    const child = await promisify(execFile)('unshare', [
      '-m',
      '--propagation',
      'private',
      'cat',
      '/proc/self/mountinfo',
    ]);
    expect(sharesAMount(await readFile('/proc/self/mountinfo', 'utf8'), child.stdout)).toBe(false);
    expect(
      sharesAMount(
        await readFile('/proc/self/mountinfo', 'utf8'),
        await readFile('/proc/self/mountinfo', 'utf8'),
      ),
    ).toBe(true);
  });
});
