import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callPlugin } from '../helpers/plugin-client.js';
import { DaemonProcess } from './daemon-process.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, PLUGIN_DIR } from './env.js';

/**
 * Bad input over the real socket of a real daemon: each request gets an Err a user can act on,
 * changes nothing, and the daemon keeps answering.
 */
let base: string;
let daemon: DaemonProcess;
let dockerd: PrivateDockerd | undefined;
let sock: string;

async function volumeNames(): Promise<string[]> {
  const list = await callPlugin(sock, 'VolumeDriver.List', {});
  expect(list.body.Err).toBe('');
  return (list.body.Volumes as { Name: string }[]).map((v) => v.Name);
}

async function images(): Promise<string[]> {
  return readdir(join(base, 'data', 'local')).catch(() => []);
}

beforeAll(async () => {
  dockerd = await startDockerd();
  base = await mkdtemp(join(tmpdir(), 'stowage-bad-'));
  daemon = new DaemonProcess({
    dataDir: join(base, 'data'),
    socketDir: PLUGIN_DIR,
    logFile: join(base, 'daemon.log'),
  });
  await daemon.start();
  sock = daemon.socket();
});

afterAll(async () => {
  await callPlugin(sock, 'VolumeDriver.Unmount', { Name: 'bad-mounted', ID: 'a'.repeat(64) }).catch(
    () => undefined,
  );
  await callPlugin(sock, 'VolumeDriver.Remove', { Name: 'bad-mounted' }).catch(() => undefined);
  await callPlugin(sock, 'VolumeDriver.Remove', { Name: 'bad-existing' }).catch(() => undefined);
  await dockerd?.stop(); // before the plugin, as Docker wants
  await daemon?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('bad input over the real plugin socket', () => {
  it.each([
    ['bad/name', /invalid volume name "bad\/name"/],
    ['..', /invalid volume name/],
    ['a..b', /without "\.\."/],
    ['-leading-dash', /starting with a letter or digit/],
    ['x', /invalid volume name/],
    ['n'.repeat(200), /200 characters long; the limit is 128/],
  ])('refuses the volume name %s', async (name, message) => {
    const res = await callPlugin(sock, 'VolumeDriver.Create', { Name: name, Opts: {} });
    expect(res.body.Err).toMatch(message);
    expect(await volumeNames()).not.toContain(name);
  });

  it('refuses an unknown option through docker volume create and lists the valid ones', async () => {
    const res = await docker(['volume', 'create', '-d', 'stowage-local', '-o', 'bogus=1', 'bad-unknown-opt']);
    expect(res.exitCode).not.toBe(0);
    expect(res.stderr).toContain(
      'unknown option "bogus" for driver local; valid options: size, fsType, onRemove',
    );
    expect((await docker(['volume', 'ls', '-q'])).stdout.split('\n')).not.toContain('bad-unknown-opt');
  });

  it.each([
    [{ size: 5 }, /Opts\.size option values must be strings/],
    [{ size: 'lots' }, /size "lots" is not a size: use a number of GiB/],
    [{ size: '1M' }, /size=1M is too small for ext4: the minimum is 8M/],
    [{ size: '100T' }, /above this host's limit of 1T/],
    [{ fsType: 'btrfs' }, /fsType="btrfs" for driver local: must be one of ext4, xfs/],
    [{ size: '64M', SIZE: '128M' }, /repeats "size"/],
  ])('refuses the options %j with a clear message', async (opts, message) => {
    const res = await callPlugin(sock, 'VolumeDriver.Create', { Name: 'bad-opts', Opts: opts });
    expect(res.body.Err).toMatch(message);
    expect(await volumeNames()).not.toContain('bad-opts');
  });

  it('answers malformed JSON with 400 and an Err', async () => {
    const res = await callPlugin(sock, 'VolumeDriver.Create', '{"Name": "bad-json", ');
    expect(res.status).toBe(400);
    expect(res.body.Err).toMatch(/^malformed JSON in request body/);
  });

  it('answers an oversized body with 413 and an Err', async () => {
    const res = await callPlugin(sock, 'VolumeDriver.Create', {
      Name: 'bad-big',
      Opts: { size: 'x'.repeat(100_000) },
    });
    expect(res.status).toBe(413);
    expect(res.body.Err).toBe('request body is larger than the 64kb limit');
  });

  it('refuses requests whose fields have the wrong shape', async () => {
    expect((await callPlugin(sock, 'VolumeDriver.Get', { Name: 42 })).body.Err).toMatch(
      /bad Get request: Name/,
    );
    expect((await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'bad-x' })).body.Err).toMatch(
      /bad Mount request: ID/,
    );
    expect((await callPlugin(sock, 'VolumeDriver.Create', [])).body.Err).toMatch(/bad Create request/);
    const unknown = await callPlugin(sock, 'VolumeDriver.Frobnicate', {});
    expect(unknown.status).toBe(404);
    expect(unknown.body.Err).toBe('unknown endpoint POST /VolumeDriver.Frobnicate');
  });

  it('refuses Remove of a mounted volume, naming the mounts and the host', async () => {
    const id = 'a'.repeat(64);
    expect(
      (await callPlugin(sock, 'VolumeDriver.Create', { Name: 'bad-mounted', Opts: { size: '16M' } })).body
        .Err,
    ).toBe('');
    const mount = await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'bad-mounted', ID: id });
    expect(mount.body.Err).toBe('');
    const rmRes = await callPlugin(sock, 'VolumeDriver.Remove', { Name: 'bad-mounted' });
    expect(rmRes.body.Err).toBe(
      `volume bad-mounted is in use by 1 mount on host ${hostname()}; stop the containers or pods using it, then remove it again`,
    );
    expect(await volumeNames()).toContain('bad-mounted');
    expect(await images()).toContain('bad-mounted.img');
    // An unknown mount ID is not an error and does not release the real mount.
    expect(
      (await callPlugin(sock, 'VolumeDriver.Unmount', { Name: 'bad-mounted', ID: 'b'.repeat(64) })).body.Err,
    ).toBe('');
    expect((await callPlugin(sock, 'VolumeDriver.Path', { Name: 'bad-mounted' })).body.Mountpoint).toBe(
      mount.body.Mountpoint,
    );
  });

  it('refuses Create of an existing name with different options and accepts the same ones', async () => {
    expect(
      (await callPlugin(sock, 'VolumeDriver.Create', { Name: 'bad-existing', Opts: { size: '64M' } })).body
        .Err,
    ).toBe('');
    const again = await callPlugin(sock, 'VolumeDriver.Create', {
      Name: 'bad-existing',
      Opts: { size: '128M' },
    });
    expect(again.body.Err).toBe(
      'volume bad-existing already exists with different options: size="128M" (recorded: "64M"); remove it first or use another name',
    );
    expect(
      (await callPlugin(sock, 'VolumeDriver.Create', { Name: 'bad-existing', Opts: { size: '64M' } })).body
        .Err,
    ).toBe('');
    const got = await callPlugin(sock, 'VolumeDriver.Get', { Name: 'bad-existing' });
    expect((got.body.Volume as { Status: { size: string } }).Status.size).toBe('64M');
  });

  it('answers Get of a missing volume with Err and Mount of it with what to do', async () => {
    expect((await callPlugin(sock, 'VolumeDriver.Get', { Name: 'bad-missing' })).body.Err).toBe(
      'volume bad-missing does not exist',
    );
    const m = await callPlugin(sock, 'VolumeDriver.Mount', { Name: 'bad-missing', ID: 'c'.repeat(64) });
    expect(m.body.Err).toBe('volume bad-missing does not exist; create it first');
  });

  it('is still serving, and only the accepted volumes exist', async () => {
    expect((await callPlugin(sock, 'Plugin.Activate', '')).body.Implements).toEqual(['VolumeDriver']);
    expect((await volumeNames()).sort()).toEqual(['bad-existing', 'bad-mounted']);
    expect((await images()).sort()).toEqual(['bad-existing.img', 'bad-mounted.img']);
  });
});
