import { statfs } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProcessRunner } from '../../src/mount/exec.js';
import { parseStatfs, SpawnFileOps } from '../../src/mount/file-ops.js';
import { failure, thrown } from '../helpers/failure.js';

/** SpawnFileOps' usage and group share against real processes, on a temp directory. */

const files = new SpawnFileOps(new ProcessRunner());

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-fileops-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('usage', () => {
  it("reports what statfs reports for the path's filesystem, in bytes and inodes", async () => {
    const u = await files.usage(dir, 10_000);
    const s = await promisify(statfs)(dir);
    expect(u.totalBytes).toBe(s.blocks * s.bsize);
    expect(u.totalInodes).toBe(s.files);
    expect(u.usedBytes + s.bfree * s.bsize).toBe(u.totalBytes);
    expect(u.availableBytes).toBeLessThanOrEqual(u.totalBytes);
    expect(u.usedInodes + u.availableInodes).toBe(u.totalInodes);
  });

  it('fails clearly for a path that does not exist', async () => {
    const err = await failure(files.usage(join(dir, 'nope'), 10_000));
    expect(err.message).toContain('statfs of');
  });

  it('parses stat -f output; anything else is INTERNAL', () => {
    expect(parseStatfs('10 4 3 4096 100 60\n', '/x')).toEqual({
      totalBytes: 40960,
      usedBytes: 24576,
      availableBytes: 12288,
      totalInodes: 100,
      usedInodes: 40,
      availableInodes: 60,
    });
    expect(thrown(() => parseStatfs('10 4 ? 4096 100 60', '/x')).code).toBe('INTERNAL');
    expect(thrown(() => parseStatfs('10 4 3 4096 100', '/x')).code).toBe('INTERNAL');
  });
});

describe('shareWithGroup', () => {
  it('gives the directory, not its contents, to the group with rwx and setgid; again changes nothing', async () => {
    const inner = join(dir, 'inner');
    await mkdir(inner, { mode: 0o700 });
    await files.shareWithGroup(dir, 2345, 10_000);
    await files.shareWithGroup(dir, 2345, 10_000);
    const s = await stat(dir);
    expect(s.gid).toBe(2345);
    expect(s.mode & 0o2070).toBe(0o2070);
    expect((await stat(inner)).gid).not.toBe(2345);
  });
});
