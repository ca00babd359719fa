import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CommandResult, CommandRunner, RunOptions } from '../../src/mount/exec.js';
import { LinuxMounter } from '../../src/mount/mounter.js';
import { type MountEntry, parseMountInfo } from '../../src/mount/mountinfo.js';

/** /proc/self/mountinfo parsing, and LinuxMounter's mount-table reads over a file we write. */

// Real lines (from a Debian host with Docker), one per shape the parser must handle.
const ROOT = '22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro';
const PROC = '23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw';
// No optional fields at all: the separator is the 7th field.
const NO_OPTIONAL = '30 22 0:25 / /run rw,nosuid,nodev - tmpfs tmpfs rw,size=814264k,mode=755';
// Several optional fields (shared and master) before the separator.
const MANY_OPTIONAL =
  '612 29 0:55 / /var/lib/docker/overlay2/abc/merged rw,relatime shared:300 master:1 propagate_from:1 unbindable - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w';
// A mount point and a source with a space (\040), a tab (\011) and a backslash (\134).
const ESCAPED =
  '700 22 7:3 / /var/lib/stowage/volumes/my\\040vol rw,relatime shared:400 - ext4 /srv/img\\011dir/a\\134b.img rw';
const LOOP =
  '701 22 7:0 / /var/lib/stowage/volumes/db rw,relatime shared:401 - xfs /dev/loop0 rw,attr2,noquota';
// A bind mount of a subdirectory: the 4th field (root) is not "/".
const BIND = '702 22 254:1 /srv/data /mnt/data ro,relatime shared:1 - ext4 /dev/vda1 rw';

/** The device id, root and propagation fields of an entry. */
function at(
  majorMinor: string,
  root: string,
  propagation: Pick<MountEntry, 'propagation' | 'peerGroup' | 'masterGroup'>,
) {
  return { majorMinor, root, ...propagation };
}

function shared(peerGroup: number) {
  return { propagation: 'shared' as const, peerGroup };
}

describe('parseMountInfo', () => {
  it('reads mount point, options, type and source from realistic lines', () => {
    expect(parseMountInfo([ROOT, PROC, LOOP, BIND].join('\n'))).toEqual([
      {
        mountPoint: '/',
        options: 'rw,relatime',
        fsType: 'ext4',
        source: '/dev/vda1',
        ...at('254:1', '/', shared(1)),
      },
      {
        mountPoint: '/proc',
        options: 'rw,nosuid,nodev,noexec,relatime',
        fsType: 'proc',
        source: 'proc',
        ...at('0:21', '/', shared(12)),
      },
      {
        mountPoint: '/var/lib/stowage/volumes/db',
        options: 'rw,relatime',
        fsType: 'xfs',
        source: '/dev/loop0',
        ...at('7:0', '/', shared(401)),
      },
      {
        mountPoint: '/mnt/data',
        options: 'ro,relatime',
        fsType: 'ext4',
        source: '/dev/vda1',
        ...at('254:1', '/srv/data', shared(1)),
      },
    ]);
  });

  it('finds the separator with no optional fields and with several', () => {
    expect(parseMountInfo(`${NO_OPTIONAL}\n${MANY_OPTIONAL}\n`)).toEqual([
      {
        mountPoint: '/run',
        options: 'rw,nosuid,nodev',
        fsType: 'tmpfs',
        source: 'tmpfs',
        ...at('0:25', '/', { propagation: 'private' }),
      },
      {
        mountPoint: '/var/lib/docker/overlay2/abc/merged',
        options: 'rw,relatime',
        fsType: 'overlay',
        source: 'overlay',
        ...at('0:55', '/', { ...shared(300), masterGroup: 1 }),
      },
    ]);
  });

  it('decodes octal escapes in the mount point and the source', () => {
    expect(parseMountInfo(ESCAPED)).toEqual([
      {
        mountPoint: '/var/lib/stowage/volumes/my vol',
        options: 'rw,relatime',
        fsType: 'ext4',
        source: '/srv/img\tdir/a\\b.img',
        ...at('7:3', '/', shared(400)),
      },
    ]);
    // A newline in a path (\012) is decoded too, and does not split the entry.
    const nl = '703 22 0:60 / /mnt/a\\012b rw - tmpfs tmpfs rw';
    expect(parseMountInfo(nl)[0]?.mountPoint).toBe('/mnt/a\nb');
  });

  it('reads propagation from the optional fields: shared (with its peer group), slave, private', () => {
    const line = (optional: string) => `40 22 0:40 / /mnt/x rw,relatime ${optional}- ext4 /dev/vdb rw`;
    const propagation = (optional: string) => {
      const [m] = parseMountInfo(line(optional));
      return { propagation: m?.propagation, peerGroup: m?.peerGroup, masterGroup: m?.masterGroup };
    };
    expect(propagation('shared:7 ')).toEqual({ propagation: 'shared', peerGroup: 7, masterGroup: undefined });
    // A slave of the host's peer group: what `rslave` (Docker's default for binds is private) gives.
    expect(propagation('master:1 ')).toEqual({ propagation: 'slave', peerGroup: undefined, masterGroup: 1 });
    // Shared and slave at once: mounts made here still reach peer group 9.
    expect(propagation('shared:9 master:1 ')).toEqual({
      propagation: 'shared',
      peerGroup: 9,
      masterGroup: 1,
    });
    expect(propagation('master:3 propagate_from:1 ')).toEqual({
      propagation: 'slave',
      peerGroup: undefined,
      masterGroup: 3,
    });
    expect(propagation('')).toEqual({ propagation: 'private', peerGroup: undefined, masterGroup: undefined });
    expect(propagation('unbindable ')).toEqual({
      propagation: 'private',
      peerGroup: undefined,
      masterGroup: undefined,
    });
  });

  it('skips blank and truncated lines instead of inventing entries', () => {
    const text = [
      '',
      ROOT,
      '24 22 0:5 / /dev rw,nosuid',
      '25 22 0:5 / /dev rw - devtmpfs',
      '',
      PROC,
      '',
    ].join('\n');
    expect(parseMountInfo(text).map((m) => m.mountPoint)).toEqual(['/', '/proc']);
    expect(parseMountInfo('')).toEqual([]);
  });

  it('parses this machine’s own /proc/self/mountinfo, which has "/" in it', async () => {
    const entries = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.some((m) => m.mountPoint === '/')).toBe(true);
    for (const m of entries) {
      expect(m.mountPoint.startsWith('/')).toBe(true);
      expect(m.fsType).not.toBe('');
    }
  });
});

describe('LinuxMounter over a mountinfo file', () => {
  let dir: string;
  let mountInfoPath: string;
  /** A runner that must not be used: reads of the mount table spawn nothing. */
  const calls: string[] = [];
  const runner: CommandRunner = {
    run: async (command) => {
      calls.push(command);
      throw new Error(`unexpected command ${command}`);
    },
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-mountinfo-'));
    mountInfoPath = join(dir, 'mountinfo');
    calls.length = 0;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function mounter() {
    return new LinuxMounter(runner, { commandTimeoutMs: 1000, mkfsTimeoutMs: 1000, mountInfoPath });
  }

  it('listMounts() reads the given file, not the real mount table', async () => {
    await writeFile(mountInfoPath, `${ROOT}\n${LOOP}\n`);
    expect(await mounter().listMounts()).toEqual([
      {
        mountPoint: '/',
        options: 'rw,relatime',
        fsType: 'ext4',
        source: '/dev/vda1',
        ...at('254:1', '/', shared(1)),
      },
      {
        mountPoint: '/var/lib/stowage/volumes/db',
        options: 'rw,relatime',
        fsType: 'xfs',
        source: '/dev/loop0',
        ...at('7:0', '/', shared(401)),
      },
    ]);
    expect(calls).toEqual([]);
  });

  it('isMountPoint() answers by exact mount point, decoding escapes', async () => {
    await writeFile(mountInfoPath, [ROOT, ESCAPED, LOOP, BIND].join('\n'));
    const m = mounter();
    expect(await m.isMountPoint('/var/lib/stowage/volumes/db')).toBe(true);
    expect(await m.isMountPoint('/var/lib/stowage/volumes/my vol')).toBe(true);
    expect(await m.isMountPoint('/mnt/data')).toBe(true);
    // Not the escaped spelling, not a parent, not a child, not a prefix.
    expect(await m.isMountPoint('/var/lib/stowage/volumes/my\\040vol')).toBe(false);
    expect(await m.isMountPoint('/var/lib/stowage/volumes')).toBe(false);
    expect(await m.isMountPoint('/var/lib/stowage/volumes/db/sub')).toBe(false);
    expect(await m.isMountPoint('/var/lib/stowage/volumes/d')).toBe(false);
    expect(calls).toEqual([]);
  });

  it('sees the file change between calls (no caching of the mount table)', async () => {
    await writeFile(mountInfoPath, ROOT);
    const m = mounter();
    expect(await m.isMountPoint('/var/lib/stowage/volumes/db')).toBe(false);
    await writeFile(mountInfoPath, `${ROOT}\n${LOOP}`);
    expect(await m.isMountPoint('/var/lib/stowage/volumes/db')).toBe(true);
  });

  it('unmount() of a path that is not in the table succeeds without running umount', async () => {
    await writeFile(mountInfoPath, ROOT);
    await expect(mounter().unmount('/var/lib/stowage/volumes/db')).resolves.toBeUndefined();
    expect(calls).toEqual([]);
  });

  it('a missing mountinfo file is an error, not an empty table', async () => {
    await expect(mounter().listMounts()).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('LinuxMounter commands', () => {
  /** Records every command and answers with the next queued result (exit 0, no output by default). */
  class RecordingRunner implements CommandRunner {
    readonly calls: { command: string; args: readonly string[]; opts: RunOptions }[] = [];
    readonly answers: CommandResult[] = [];
    async run(command: string, args: readonly string[], opts: RunOptions): Promise<CommandResult> {
      this.calls.push({ command, args, opts });
      return this.answers.shift() ?? { stdout: '', stderr: '', exitCode: 0 };
    }
  }

  let dir: string;
  let runner: RecordingRunner;
  let m: LinuxMounter;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-mounter-'));
    runner = new RecordingRunner();
    m = new LinuxMounter(runner, {
      commandTimeoutMs: 1111,
      mkfsTimeoutMs: 2222,
      mountInfoPath: join(dir, 'mountinfo'),
    });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('mount passes type and options, and ends options with "--" before the paths', async () => {
    await m.mount('/dev/loop0', '/mnt/-odd name', { fsType: 'xfs', options: ['noatime', 'nodev'] });
    await m.mount('/dev/loop1', '/mnt/b', { timeoutMs: 5 });
    expect(runner.calls.map((c) => [c.command, c.args, c.opts.timeoutMs])).toEqual([
      ['mount', ['-t', 'xfs', '-o', 'noatime,nodev', '--', '/dev/loop0', '/mnt/-odd name'], 1111],
      ['mount', ['--', '/dev/loop1', '/mnt/b'], 5],
    ]);
    expect(runner.calls[0]?.opts.what).toBe('mount of /dev/loop0 on /mnt/-odd name');
  });

  it('unmount runs umount (lazy with -l) only for a mount point in the table', async () => {
    await writeFile(join(dir, 'mountinfo'), `${ROOT}\n${LOOP}\n`);
    await m.unmount('/var/lib/stowage/volumes/db');
    await m.unmount('/var/lib/stowage/volumes/db', { lazy: true });
    await m.unmount('/var/lib/stowage/volumes/other');
    expect(runner.calls.map((c) => [c.command, c.args])).toEqual([
      ['umount', ['--', '/var/lib/stowage/volumes/db']],
      ['umount', ['-l', '--', '/var/lib/stowage/volumes/db']],
    ]);
  });

  it("probeFilesystem reads blkid's answer; exit 2 and empty output mean a blank device", async () => {
    runner.answers.push(
      { stdout: 'ext4\n', stderr: '', exitCode: 0 },
      { stdout: '', stderr: '', exitCode: 2 },
      { stdout: '\n', stderr: '', exitCode: 0 },
    );
    expect(await m.probeFilesystem('/dev/loop0')).toBe('ext4');
    expect(await m.probeFilesystem('/dev/loop1')).toBeNull();
    expect(await m.probeFilesystem('/dev/loop2')).toBeNull();
    expect(runner.calls[0]?.args).toEqual(['-p', '-s', 'TYPE', '-o', 'value', '--', '/dev/loop0']);
    expect(runner.calls[0]?.opts.okExitCodes).toEqual([2]);
  });

  it('makeFilesystem runs mkfs.<type> with the mkfs deadline and refuses other types', async () => {
    await m.makeFilesystem('/dev/loop0', 'ext4');
    await m.makeFilesystem('/dev/loop1', 'xfs');
    expect(runner.calls.map((c) => [c.command, c.args, c.opts.timeoutMs])).toEqual([
      ['mkfs.ext4', ['-q', '-F', '--', '/dev/loop0'], 2222],
      ['mkfs.xfs', ['-q', '--', '/dev/loop1'], 2222],
    ]);
    await expect(m.makeFilesystem('/dev/loop2', 'btrfs')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'cannot format /dev/loop2 as btrfs: use ext4 or xfs',
    });
    expect(runner.calls).toHaveLength(2);
  });

  it('grows ext4 with resize2fs (online or not) and xfs with xfs_growfs on its mount point, under the mkfs deadline', async () => {
    await m.growFilesystem('/dev/loop0', 'ext4', { mountpoint: '/mnt/a' });
    await m.growFilesystem('/dev/loop0', 'ext4');
    await m.growFilesystem('/dev/loop1', 'xfs', { mountpoint: '/mnt/-b' });
    expect(runner.calls.map((c) => [c.command, c.args, c.opts.timeoutMs, c.opts.what])).toEqual([
      ['resize2fs', ['--', '/dev/loop0'], 2222, 'online resize2fs of /dev/loop0'],
      ['resize2fs', ['--', '/dev/loop0'], 2222, 'offline resize2fs of /dev/loop0'],
      ['xfs_growfs', ['--', '/mnt/-b'], 2222, 'xfs_growfs of /mnt/-b'],
    ]);
    await expect(m.growFilesystem('/dev/loop1', 'xfs')).rejects.toMatchObject({
      code: 'NOT_SUPPORTED',
      message: 'xfs grows only while mounted; /dev/loop1 is not',
    });
    await expect(m.growFilesystem('/dev/loop2', 'btrfs', { mountpoint: '/mnt/c' })).rejects.toMatchObject({
      code: 'NOT_SUPPORTED',
    });
    expect(runner.calls).toHaveLength(3);
  });

  it('checks ext4 with e2fsck -f -y (exit 1, errors corrected, is success) and reads device sizes with blockdev', async () => {
    await m.checkFilesystem('/dev/loop0', 'ext4');
    runner.answers.push(
      { stdout: '', stderr: '', exitCode: 0 },
      { stdout: '2147483648\n', stderr: '', exitCode: 0 },
    );
    await expect(m.deviceSize('/dev/loop0')).rejects.toMatchObject({ code: 'INTERNAL' }); // no output
    expect(await m.deviceSize('/dev/loop0')).toBe(2 * 1024 ** 3);
    expect(runner.calls.map((c) => [c.command, c.args, c.opts.okExitCodes])).toEqual([
      ['e2fsck', ['-f', '-y', '--', '/dev/loop0'], [1]],
      ['blockdev', ['--getsize64', '/dev/loop0'], undefined],
      ['blockdev', ['--getsize64', '/dev/loop0'], undefined],
    ]);
    await expect(m.checkFilesystem('/dev/loop1', 'xfs')).rejects.toMatchObject({ code: 'NOT_SUPPORTED' });
    await expect(m.deviceSize('loop0')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('isBlockDevice is false for regular files and missing paths', async () => {
    await writeFile(join(dir, 'file'), '');
    expect(await m.isBlockDevice(join(dir, 'file'))).toBe(false);
    expect(await m.isBlockDevice(join(dir, 'missing'))).toBe(false);
    expect(await m.isBlockDevice('/dev/null')).toBe(false);
  });

  it('hasTool finds installed tools in the sbin and bin directories only', async () => {
    expect(await m.hasTool('sh')).toBe(true);
    expect(await m.hasTool('stowage-no-such-tool')).toBe(false);
  });
});
