import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

/** A new directory `stowage-<prefix>-…` under the system's temp directory. */
export function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `stowage-${prefix}-`));
}

/** Removes `dir` and everything in it (device nodes and links made by a test too). */
export function removeTempDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}

/**
 * For a whole test file: each test gets a fresh temp directory (the returned function gives its
 * path), removed with all it holds after the test. Register it before the hooks that use it.
 */
export function useTempDir(prefix: string): () => string {
  let dir: string | undefined;
  beforeEach(async () => {
    dir = await makeTempDir(prefix);
  });
  afterEach(async () => {
    if (dir) await removeTempDir(dir);
    dir = undefined;
  });
  return () => {
    if (!dir) throw new Error('useTempDir: the directory exists only inside a test');
    return dir;
  };
}
