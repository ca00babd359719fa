import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildCli } from '../../src/cli/main.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';

/**
 * The CLI's commands that open the runtime count themselves in the store (door `cli`), for the
 * daemon's /metrics: once each, with their outcome, under this host, from one place (withRuntime).
 * In process, on a SQLite file in a temp directory; none of these commands touches the kernel.
 */
let dir: string;
let config: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-cli-counted-'));
  config = join(dir, 'config.yaml');
  await writeFile(config, '');
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

async function stowage(...args: string[]): Promise<unknown> {
  const global = ['--config', config, '--data-dir', join(dir, 'data'), '--host-id', 'cli-host'];
  return buildCli()
    .exitOverride()
    .parseAsync(['node', 'stowage', ...global, ...args])
    .then(
      () => undefined,
      (err: unknown) => err,
    );
}

describe('CLI commands counted in the store', () => {
  it('counts each command that opens the runtime, by its words and outcome, without a driver', async () => {
    expect(await stowage('volumes', 'ls')).toBeUndefined();
    expect(await stowage('volumes', 'ls', '--json')).toBeUndefined();
    expect(await stowage('volumes', 'inspect', 'ghost')).toMatchObject({ code: 'NOT_FOUND' });
    expect(await stowage('volumes', 'rm', 'Bad Name!')).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await stowage('hosts', 'ls')).toBeUndefined();
    // Commands that do not open the runtime are not requests of the store.
    expect(await stowage('config')).toBeUndefined();

    const store = new SqliteStore(join(dir, 'data', 'state.db'));
    try {
      const tallies = await store.requestTallies('cli-host');
      const counted = new Map<string, number>();
      for (const r of tallies) {
        const key = `${r.door}|${r.driver}|${r.operation}|${r.code}`;
        counted.set(key, (counted.get(key) ?? 0) + r.count);
      }
      expect(Object.fromEntries(counted)).toEqual({
        'cli||volumes ls|OK': 2,
        'cli||volumes inspect|NOT_FOUND': 1,
        'cli||volumes rm|INVALID_ARGUMENT': 1,
        'cli||hosts ls|OK': 1,
      });
      expect(await store.requestTallies('another-host')).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
