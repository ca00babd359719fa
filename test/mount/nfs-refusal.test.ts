import { describe, expect, it } from 'vitest';
import { isStowageError, type StowageError } from '../../src/base/errors.js';
import {
  type CommandResult,
  type CommandRunner,
  commandFailed,
  type RunOptions,
} from '../../src/mount/exec.js';
import { LinuxMounter } from '../../src/mount/mounter.js';

/**
 * An NFS mount that mount(8) refused: LinuxMounter over a runner that fails the way ProcessRunner
 * does, with the words Debian's mount.nfs4 and busybox mount really print (exit 32).
 */
class RefusingRunner implements CommandRunner {
  constructor(
    private readonly stderr: string,
    private readonly exitCode = 32,
  ) {}
  async run(command: string, args: readonly string[], opts: RunOptions): Promise<CommandResult> {
    throw commandFailed(opts.what ?? [command, ...args].join(' '), {
      stdout: '',
      stderr: this.stderr,
      exitCode: this.exitCode,
    });
  }
}

async function refusal(stderr: string, fsType = 'nfs4', exitCode = 32): Promise<StowageError> {
  const mounter = new LinuxMounter(new RefusingRunner(stderr, exitCode), {
    commandTimeoutMs: 1000,
    mkfsTimeoutMs: 1000,
  });
  const err = await mounter
    .mount('10.0.2.2:/export/missing', '/var/lib/stowage/mounts/v', { fsType, options: ['vers=4.1'] })
    .then(
      () => new Error('the mount succeeded'),
      (e: unknown) => e,
    );
  expect(isStowageError(err), String(err)).toBe(true);
  return err as StowageError;
}

describe('NFS mount refused by the server or the kernel', () => {
  it.each([
    [
      'mount.nfs4: mounting 10.0.2.2:/export/missing failed, reason given by server: No such file or directory\n',
      'NOT_FOUND',
      /NFS server 10\.0\.2\.2 does not export \/export\/missing: check the share or export option/,
    ],
    [
      'mount: mounting 10.0.2.2:/export/missing on /var/lib/stowage/mounts/v failed: No such file or directory\n',
      'NOT_FOUND',
      /NFS server 10\.0\.2\.2 does not export \/export\/missing: check the share or export option/,
    ],
    ['mount.nfs4: Connection refused\n', 'UNAVAILABLE', /NFS server 10\.0\.2\.2 is running and reachable/],
    ['mount.nfs4: No route to host\n', 'UNAVAILABLE', /NFS server 10\.0\.2\.2 is running and reachable/],
    [
      'mount.nfs4: access denied by server while mounting 10.0.2.2:/export/missing\n',
      'PERMISSION_DENIED',
      /client list/,
    ],
    ['mount.nfs4: Protocol not supported\n', 'INVALID_ARGUMENT', /nfsVersion/],
    [
      'mount.nfs4: Failed to resolve server nas.example: Name or service not known\n',
      'UNAVAILABLE',
      /server name/,
    ],
    [
      "mount: /var/lib/stowage/mounts/v: unknown filesystem type 'nfs4'.\n",
      'UNAVAILABLE',
      /install nfs-common/,
    ],
    ['mount.nfs4: an incorrect mount option was specified\n', 'INVALID_ARGUMENT', /mountOptions/],
  ])('%s -> %s', async (stderr, code, hint) => {
    const err = await refusal(stderr);
    expect(err.code).toBe(code);
    expect(err.message).toContain(
      `mount of 10.0.2.2:/export/missing on /var/lib/stowage/mounts/v failed (exit 32): ${stderr.trim()}; `,
    );
    expect(err.message).toMatch(hint);
    expect(err.details).toMatchObject({ server: '10.0.2.2', export: '/export/missing' });
  });

  it('keeps an unknown refusal out of INTERNAL, still naming the server, the export and the words', async () => {
    const err = await refusal('mount.nfs4: something new went wrong\n');
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(
      'mount of 10.0.2.2:/export/missing on /var/lib/stowage/mounts/v failed (exit 32): mount.nfs4: something new went wrong; ' +
        'check NFS server 10.0.2.2 and that it exports /export/missing',
    );
  });

  it('explains EFS mounts (efs-utils helper) the same way', async () => {
    expect((await refusal('mount.nfs4: Connection refused', 'efs')).code).toBe('UNAVAILABLE');
  });

  it('leaves the failure of a block device mount as the runner reported it', async () => {
    const err = await refusal(
      'mount: /mnt: wrong fs type, bad option, bad superblock on /dev/loop3.',
      'ext4',
    );
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(/^mount of 10\.0\.2\.2:\/export\/missing on .* failed \(exit 32\): mount: /);
  });
});
