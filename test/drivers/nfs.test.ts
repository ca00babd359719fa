import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isStowageError, StowageError } from '../../src/base/errors.js';
import { failure } from '../helpers/failure.js';
import type { TestRuntime } from '../helpers/runtime.js';
import { setupNfs } from './nfs-runtime.js';

/**
 * The nfs driver through the real VolumeManager over the fake kernel (composition: nfs-runtime.ts;
 * the "server" is a local directory).
 */
const ID = 'a'.repeat(64);
let t: TestRuntime;
let server: string; // the fake server's filesystem root
let exportsDir: string; // its /exports

async function setup(nfs: Record<string, unknown> = {}) {
  ({ t, server, exportsDir } = await setupNfs(nfs));
}

beforeEach(() => setup());
afterEach(async () => {
  await t.cleanup();
});

describe('nfs options', () => {
  it('takes server and share from the daemon config when the volume gives none', async () => {
    const vol = await t.manager.create('nfs', 'v1', {});
    expect(vol.options).toMatchObject({
      server: 'nfs1',
      share: '/exports',
      nfsVersion: '4.1',
      onRemove: 'retain',
      mode: '0755',
    });
    // Shared data, but a single-host store: Docker hears `local` (global needs etcd).
    expect(t.runtime.registry.get('nfs').scope).toBe('global');
    expect(t.manager.capabilities('nfs').scope).toBe('local');
  });

  it('accepts the spellings of rancher-nfs and csi-driver-nfs', () => {
    const driver = t.runtime.registry.get('nfs');
    const parsed = driver.parseOptions({
      host: '10.0.0.5',
      exportBase: '/srv/nfs/',
      mntOptions: 'soft,timeo=30',
      onRemove: 'purge',
      nfsvers: '4.2',
      mountPermissions: '0750',
      subDir: 'team/{name}',
      uid: '1000',
      gid: '1001',
      mountTimeout: '5s',
    });
    expect(parsed.values).toEqual({
      server: '10.0.0.5',
      share: '/srv/nfs',
      mountOptions: ['soft', 'timeo=30'],
      onRemove: 'delete',
      nfsVersion: '4.2',
      mode: '0750',
      subdir: 'team/{name}',
      uid: 1000,
      gid: 1001,
      mountTimeout: '5s',
    });
  });

  it.each([
    [{ server: 'bad host' }, /option server="bad host" for driver nfs: must be a hostname or an IP address/],
    [{ share: 'relative' }, /must be an absolute path on the server/],
    [{ share: '/a/../etc' }, /must not contain "\.\."/],
    [{ subdir: '../escape' }, /must be a relative path of names/],
    [{ nfsVersion: '5' }, /must be one of 3, 4, 4\.1, 4\.2/],
    [{ onRemove: 'shred' }, /must be one of retain, delete, purge, archive/],
    [{ mode: '999' }, /must be an octal mode/],
    [{ mountTimeout: 'forever' }, /must be a duration up to 10m/],
    [{ mountOptions: 'rw;reboot' }, /"rw;reboot" is not a mount option/],
    [{ share: '/x', export: '/y' }, /give either share .* or export, not both/],
    [{ export: '/y', subdir: 'x' }, /export mounts the export itself; subdir needs share instead/],
    [{ export: '/y', onRemove: 'delete' }, /would remove the whole export \/y; only retain is allowed/],
    [
      { mountOptions: 'vers=3', nfsVersion: '4.1' },
      /mountOptions say vers=3 but nfsVersion=4\.1; give the version once/,
    ],
    [
      { color: 'blue' },
      /unknown option "color" for driver nfs; valid options: server \(alias host\), share \(alias exportBase\)/,
    ],
  ])('refuses %j with a clear message and records nothing', async (opts, message) => {
    const err = await failure(t.manager.create('nfs', 'bad', opts));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(message);
    expect(await t.store.getVolume('bad')).toBeUndefined();
    expect(await readdir(exportsDir)).toEqual([]);
  });

  it('takes preempt (true/false/yes/no/1/0) for access=single-host and refuses anything else', () => {
    const driver = t.runtime.registry.get('nfs');
    expect(driver.parseOptions({ access: 'single-host', preempt: 'yes' }).values).toMatchObject({
      access: 'single-host',
      preempt: true,
    });
    expect(driver.parseOptions({ preempt: '0' }).values).toMatchObject({ preempt: false });
    expect(() => driver.parseOptions({ preempt: 'maybe' })).toThrow(
      /option preempt="maybe" for driver nfs: must be true or false/,
    );
  });

  it('refuses a volume when neither the volume nor the config names a server', async () => {
    await t.cleanup();
    await setup({ server: undefined });
    const err = await failure(t.manager.create('nfs', 'v1', {}));
    expect(err.message).toBe(
      'driver nfs: no NFS server: give -o server=HOST, or set nfs.server in the config',
    );
  });
});

describe('nfs provisioning', () => {
  it('creates the subdirectory with the requested mode through a staging mount that it removes again', async () => {
    await t.manager.create('nfs', 'v1', { mode: '0750' });
    const s = await stat(join(exportsDir, 'v1'));
    expect(s.isDirectory()).toBe(true);
    expect(s.mode & 0o7777).toBe(0o750);
    expect(t.mounter.table.size).toBe(0); // staging unmounted
    expect(await readdir(t.config.stagingDir)).toEqual([]); // and its directory removed
    const [staging] = t.mounter.callsOf('mount');
    expect(staging?.detail).toMatchObject({ source: 'nfs1:/exports', fsType: 'nfs4', options: ['vers=4.1'] });
  });

  it('expands {name} in subdir and records where the data lives', async () => {
    const vol = await t.manager.create('nfs', 'v2', { subdir: 'team/{name}-data' });
    expect((await stat(join(exportsDir, 'team', 'v2-data'))).isDirectory()).toBe(true);
    expect(vol.fields).toMatchObject({
      server: 'nfs1',
      remotePath: '/exports/team/v2-data',
      subdir: 'team/v2-data',
    });
    expect(vol.adopted).toBe(false);
  });

  it('adopts an existing directory and keeps it on Remove unless delete was asked explicitly', async () => {
    await t.cleanup();
    await setup({ onRemove: 'delete' }); // the daemon default would delete ...
    await mkdir(join(exportsDir, 'old'));
    await writeFile(join(exportsDir, 'old', 'precious'), 'data');
    const vol = await t.manager.create('nfs', 'old', {});
    expect(vol.adopted).toBe(true);
    expect(vol.removePolicy).toBe('retain'); // ... but adopted data is kept
    await t.manager.remove('nfs', 'old');
    expect(await readdir(join(exportsDir, 'old'))).toEqual(['precious']);

    await t.manager.create('nfs', 'old', { onRemove: 'delete' });
    await t.manager.remove('nfs', 'old');
    expect(await readdir(exportsDir)).toEqual([]);
  });

  it('mounts an export itself with export=, never touching it on Remove', async () => {
    await mkdir(join(server, 'whole'));
    const vol = await t.manager.create('nfs', 'whole', { export: '/whole' });
    expect(vol.removePolicy).toBe('retain');
    expect(await t.manager.mount('nfs', 'whole', ID)).toBe(join(t.config.mountRoot, 'whole'));
    expect(t.mounter.table.get(join(t.config.mountRoot, 'whole'))?.source).toBe('nfs1:/whole');
    await t.manager.unmount('nfs', 'whole', ID);
    await t.manager.remove('nfs', 'whole');
    expect(await readdir(server)).toContain('whole');
  });

  it('says which server did not answer when the share cannot be mounted, and records nothing', async () => {
    const err = await failure(t.manager.create('nfs', 'v1', { server: 'ghost', mountTimeout: '2s' }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toMatch(/^NFS server ghost did not answer within 2 s/);
    expect(await t.store.getVolume('v1')).toBeUndefined();
    expect(await readdir(t.config.stagingDir)).toEqual([]);
  });
});

describe('nfs mounts', () => {
  it('mounts server:/share/subdir once per host with the version first and user options over the defaults', async () => {
    await t.cleanup();
    await setup({ mountOptions: ['hard', 'timeo=600', 'port=2049'] });
    await t.manager.create('nfs', 'v1', { mountOptions: 'timeo=50,noatime' });
    const target = await t.manager.mount('nfs', 'v1', ID);
    await t.manager.mount('nfs', 'v1', 'b'.repeat(64));
    const mounts = t.mounter.callsOf('mount').filter((c) => c.path === target);
    expect(mounts).toHaveLength(1);
    expect(mounts[0]?.detail).toMatchObject({
      source: 'nfs1:/exports/v1',
      fsType: 'nfs4',
      options: ['vers=4.1', 'hard', 'timeo=50', 'port=2049', 'noatime'],
      timeoutMs: 30_000,
    });
    expect((await t.store.getMounts('v1'))[0]?.refs).toEqual({ [ID]: 1, ['b'.repeat(64)]: 1 });
    expect(await t.store.getAttachments('v1')).toEqual([]); // NFS needs no attach
  });

  it('uses -t nfs for NFSv3 and takes the version from mountOptions when only they give it', async () => {
    await t.manager.create('nfs', 'v3', { mountOptions: 'nfsvers=3,tcp' });
    await t.manager.mount('nfs', 'v3', ID);
    const call = t.mounter.callsOf('mount').find((c) => c.path.endsWith('/v3'));
    expect(call?.detail).toMatchObject({ fsType: 'nfs', options: ['vers=3', 'tcp'] });
  });

  it('turns a mount that outlives mountTimeout into "NFS server S did not answer within N s" and keeps serving', async () => {
    await t.manager.create('nfs', 'v1', { mountTimeout: '3s' });
    t.mounter.nfsServers.delete('nfs1'); // the server went quiet after Create
    const err = await failure(t.manager.mount('nfs', 'v1', ID));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(
      'NFS server nfs1 did not answer within 3 s (mount of nfs1:/exports/v1); check that the server is up and ' +
        'reachable from this host, or raise the mountTimeout option',
    );
    expect(await t.store.getMounts('v1')).toEqual([]);
    await t.manager.create('local', 'other', { size: '16M' }); // the manager still works
    expect(await t.manager.mount('local', 'other', ID)).toBe(join(t.config.mountRoot, 'other'));
  });

  it('falls back to a lazy unmount when the server is gone at the last unmount', async () => {
    await t.manager.create('nfs', 'v1', {});
    const target = await t.manager.mount('nfs', 'v1', ID);
    t.mounter.failNext('unmount', new StowageError('TIMEOUT', `unmount of ${target} did not finish`));
    await t.manager.unmount('nfs', 'v1', ID);
    const unmounts = t.mounter.callsOf('unmount').filter((c) => c.path === target);
    expect(unmounts.map((c) => c.detail)).toEqual([
      expect.objectContaining({ timeoutMs: 30_000 }),
      expect.objectContaining({ lazy: true }),
    ]);
    expect(t.mounter.table.has(target)).toBe(false);
    expect(await t.store.getMounts('v1')).toEqual([]);
  });
  it("bounds each unmount step against a dead server by the volume's mountTimeout, not the 30 s command deadline", async () => {
    await t.manager.create('nfs', 'v1', { mountTimeout: '6s' });
    const target = await t.manager.mount('nfs', 'v1', ID);
    t.mounter.nfsServers.delete('nfs1'); // the server died while mounted
    // What the runner throws when it kills a umount that hung on the dead server at its deadline.
    t.mounter.failNext(
      'unmount',
      new StowageError('TIMEOUT', `unmount of ${target} did not finish within 6 s`),
    );
    await t.manager.unmount('nfs', 'v1', ID);
    const unmounts = t.mounter.callsOf('unmount').filter((c) => c.path === target);
    expect(unmounts.map((c) => c.detail)).toEqual([{ timeoutMs: 6_000 }, { lazy: true, timeoutMs: 6_000 }]);
    expect(t.mounter.table.has(target)).toBe(false);
    expect(await t.store.getMounts('v1')).toEqual([]);
  });
});

describe('nfs remove policies', () => {
  async function used(name: string, opts: Record<string, string>) {
    await t.manager.create('nfs', name, opts);
    await t.manager.mount('nfs', name, ID);
    await writeFile(join(exportsDir, name, 'file'), 'x'); // as a container would, through the mount
    await t.manager.unmount('nfs', name, ID);
  }

  it('refuses Remove while mounted, then keeps the directory under retain', async () => {
    await t.manager.create('nfs', 'rr', { onRemove: 'retain' });
    await t.manager.mount('nfs', 'rr', ID);
    const err = await failure(t.manager.remove('nfs', 'rr'));
    expect(isStowageError(err, 'IN_USE')).toBe(true);
    await t.manager.unmount('nfs', 'rr', ID);
    await t.manager.remove('nfs', 'rr');
    expect(await readdir(exportsDir)).toEqual(['rr']);
    expect(await t.store.getVolume('rr')).toBeUndefined();
  });

  it('deletes the directory and its data under delete (alias purge)', async () => {
    await used('dd', { onRemove: 'purge' });
    await t.manager.remove('nfs', 'dd');
    expect(await readdir(exportsDir)).toEqual([]);
  });

  it('renames the directory to archived-<subdir>-<time> under archive', async () => {
    await used('aa', { onRemove: 'archive' });
    await t.manager.remove('nfs', 'aa');
    const [archived, ...rest] = await readdir(exportsDir);
    expect(rest).toEqual([]);
    expect(archived).toMatch(/^archived-aa-\d{8}T\d{6}Z$/);
    expect(await readdir(join(exportsDir, archived!))).toEqual(['file']);
  });

  it('treats a directory already gone from the server as removed', async () => {
    await t.manager.create('nfs', 'gone', { onRemove: 'delete' });
    await rm(join(exportsDir, 'gone'), { recursive: true }); // someone removed it on the server
    await t.manager.remove('nfs', 'gone');
    expect(await t.store.getVolume('gone')).toBeUndefined();
  });
});

describe('nfs doctor', () => {
  it('reports whether the configured server answers', async () => {
    const driver = t.runtime.registry.get('nfs');
    expect(await driver.doctor?.()).toEqual([
      { name: 'nfs: server', ok: true, detail: 'nfs1:2049 fake probe' },
    ]);
    t.mounter.nfsServers.delete('nfs1');
    const [check] = (await driver.doctor?.()) ?? [];
    expect(check?.ok).toBe(false);
    expect(check?.detail).toMatch(/NFS volumes cannot be created or mounted until it answers/);
  });
});
