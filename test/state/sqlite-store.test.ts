import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/state/sqlite-migrations.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import { storeContract, volume } from './store-contract.js';

const dirs: string[] = [];
async function tempDb(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'stowage-sqlite-'));
  dirs.push(dir);
  return join(dir, 'state.db');
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

storeContract(
  'sqlite',
  async () => new SqliteStore(await tempDb()),
  async (s) => new SqliteStore((s as SqliteStore).path),
);

describe('SqliteStore', () => {
  it('keeps everything across close and reopen', async () => {
    const path = await tempDb();
    const a = new SqliteStore(path);
    await a.insertVolume(volume('persist', { fields: { sizeBytes: 5 } }));
    await a.putMount({
      volume: 'persist',
      host: 'h',
      mountpoint: '/m',
      refs: { id1: 2 },
      state: 'mounted',
      updatedAt: 't',
    });
    await a.putAttachment({
      volume: 'persist',
      host: 'h',
      device: '/dev/loop9',
      state: 'attached',
      updatedAt: 't',
    });
    const intent = await a.beginIntent({ volume: 'persist', host: 'h', op: 'unmount', details: {} });
    await a.close();

    const b = new SqliteStore(path);
    expect(b.schemaVersion()).toBe(MIGRATIONS.length);
    expect(await b.getVolume('persist')).toEqual(volume('persist', { fields: { sizeBytes: 5 } }));
    expect((await b.getMounts('persist'))[0]?.refs).toEqual({ id1: 2 });
    expect((await b.getAttachments('persist'))[0]?.device).toBe('/dev/loop9');
    expect((await b.listIntents('h')).map((i) => i.id)).toEqual([intent]);
    await b.close();
  });

  it('uses WAL so a reader in another connection is not blocked by a writer', async () => {
    const path = await tempDb();
    const s = new SqliteStore(path);
    const raw = new Database(path);
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();
    await s.close();
  });

  it("answers List again from the database after its own or another connection's write", async () => {
    const path = await tempDb();
    const daemon = new SqliteStore(path);
    const cli = new SqliteStore(path); // e.g. the flexvolume process on the same host
    await daemon.insertVolume(volume('one'));
    const first = await daemon.listVolumeSummaries('h');
    expect(await daemon.listVolumeSummaries('h')).toBe(first); // unchanged database: same answer
    await cli.insertVolume(volume('two'));
    expect((await daemon.listVolumeSummaries('h')).map((v) => v.name)).toEqual(['one', 'two']);
    await daemon.putMount({
      volume: 'two',
      host: 'h',
      mountpoint: '/m/two',
      refs: { a: 1 },
      state: 'mounted',
      updatedAt: 't',
    });
    expect((await daemon.listVolumeSummaries('h'))[1]?.mountpoint).toBe('/m/two');
    await cli.deleteMount('two', 'h');
    expect((await daemon.listVolumeSummaries('h'))[1]?.mountpoint).toBeUndefined();
    await cli.close();
    await daemon.close();
  });

  it('refuses a database written by a newer stowage', async () => {
    const path = await tempDb();
    const raw = new Database(path);
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    raw.close();
    expect(() => new SqliteStore(path)).toThrow(/newer than this stowage knows/);
  });

  it('serves two processes writing the same database at once', async () => {
    const path = await tempDb();
    const parent = new SqliteStore(path);
    const fixture = join(import.meta.dirname, 'fixtures', 'writer.ts');
    const child = execa('node', ['--no-warnings', '--import', 'tsx', fixture, path, 'child', '300'], {
      timeout: 60_000,
    });
    for (let i = 0; i < 300; i++) {
      await parent.insertVolume(volume(`parent-${i}`));
      const lock = await parent.tryLock(`volume/parent-${i}`, 'p', 1000);
      expect(lock.acquired).toBe(true);
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    const res = await child;
    expect(res.stdout).toBe('done');
    const names = (await parent.listVolumes()).map((v) => v.name);
    expect(names.filter((n) => n.startsWith('parent-'))).toHaveLength(300);
    expect(names.filter((n) => n.startsWith('child-'))).toHaveLength(300);
    expect(await parent.listMountsByHost('child')).toHaveLength(300);
    await parent.close();
  });

  it('closed for an exit, leaves its write-ahead log to the next opener and loses no write', async () => {
    const fixture = join(import.meta.dirname, 'fixtures', 'writer.ts');
    const write = async (path: string, how: string) => {
      const res = await execa('node', ['--no-warnings', '--import', 'tsx', fixture, path, 'w', '20', how], {
        timeout: 60_000,
      });
      expect(res.stdout).toBe('done');
    };
    // A plain close by the last connection checkpoints the log into the database and deletes it.
    const closed = await tempDb();
    await write(closed, 'close');
    expect(existsSync(`${closed}-wal`)).toBe(false);
    // Closed for an exit: the log stays, with the writes in it...
    const exited = await tempDb();
    await write(exited, 'exiting');
    expect(statSync(`${exited}-wal`).size).toBeGreaterThan(0);
    // ...and the next opener reads every one of them, then tidies up on its own close.
    const next = new SqliteStore(exited);
    expect((await next.listVolumes()).map((v) => v.name)).toEqual(
      Array.from({ length: 20 }, (_, i) => `w-${i}`).sort(),
    );
    expect((await next.getMounts('w-19'))[0]?.mountpoint).toBe('/m/19');
    await next.close();
    expect(existsSync(`${exited}-wal`)).toBe(false);
  });

  it('names the file when the database cannot be opened', async () => {
    const notADir = await tempDb(); // a regular file where a directory would have to be
    await writeFile(notADir, 'x');
    expect(() => new SqliteStore(join(notADir, 'state.db'))).toThrow(
      `cannot open the state database ${join(notADir, 'state.db')}`,
    );
  });
});
