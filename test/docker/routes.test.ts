import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../../src/base/backoff.js';
import { isStowageError } from '../../src/base/errors.js';
import { closePluginSockets, type PluginSocket, servePluginSockets } from '../../src/docker/server.js';
import { callPlugin } from '../helpers/plugin-client.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';

/**
 * The Docker plugin adapter in-process, on a real unix socket, over the fake kernel: the exact
 * replies dockerd gets for the call sequence it was observed to send
 * (../shared/reference/docker-volume-plugin.md), and the socket file's lifecycle.
 * Bad input is covered against the real daemon in test/e2e/docker-bad-input.test.ts.
 */

// dockerd sends a new random ID per mount point; `docker run` mounts twice.
const ID_1 = `5c82${'e'.repeat(60)}`;
const ID_2 = `7370${'f'.repeat(60)}`;
const ISO_DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let t: TestRuntime;
let sockets: PluginSocket[];
let sock: string;

beforeAll(async () => {
  t = await createTestRuntime();
  sockets = await servePluginSockets(t.manager, t.runtime.log, {
    socketDir: t.config.socketDir,
    prefix: 'stowage-',
    drivers: ['local'],
  });
  sock = join(t.config.socketDir, 'stowage-local.sock');
});

afterAll(async () => {
  if (sockets) await closePluginSockets(sockets, t.runtime.log);
  await t?.cleanup();
});

function post(endpoint: string, body?: unknown) {
  return callPlugin(sock, endpoint, body);
}

/** Lets a plain socket server run in a child process that can then die without cleaning up. */
function socketHolder(path: string) {
  const child = spawn(
    process.execPath,
    [
      '-e',
      "require('node:net').createServer().listen(process.argv[1], () => process.stdout.write('ready\\n'))",
      path,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`socket holder exited early (${code})`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, ready, exited };
}

describe('the observed dockerd call sequence, reply by reply', () => {
  const mountpoint = () => join(t.config.mountRoot, 'v1');
  let createdAt = '';

  /** Get's reply for v1 with the given mount state on this host. */
  function getReply(mounted: { device: string } | undefined) {
    return {
      Volume: {
        Name: 'v1',
        Mountpoint: mounted ? mountpoint() : '',
        CreatedAt: createdAt,
        Status: {
          driver: 'local',
          state: 'ready',
          removePolicy: 'delete',
          adopted: false,
          size: '1G',
          fsType: 'ext4',
          image: join(t.config.local.imageDir, 'v1.img'),
          mounts: mounted ? [{ host: TEST_HOST, mountpoint: mountpoint(), refs: 1, state: 'mounted' }] : [],
          attachments: mounted ? [{ host: TEST_HOST, device: mounted.device, state: 'attached' }] : [],
        },
      },
      Err: '',
    };
  }

  it('docker volume create: Activate (empty body), Capabilities, Get (missing), Create', async () => {
    expect(await post('Plugin.Activate', '')).toEqual({
      status: 200,
      body: { Implements: ['VolumeDriver'], Err: '' },
    });
    expect(await post('VolumeDriver.Capabilities', {})).toEqual({
      status: 200,
      body: { Capabilities: { Scope: 'local' }, Err: '' },
    });
    // Only a volume that really does not exist may get an Err from Get (dockerd purges it).
    expect(await post('VolumeDriver.Get', { Name: 'v1' })).toEqual({
      status: 200,
      body: { Err: 'volume v1 does not exist' },
    });
    expect(await post('VolumeDriver.Create', { Name: 'v1', Opts: {} })).toEqual({
      status: 200,
      body: { Err: '' },
    });
    const vol = await t.store.getVolume('v1');
    expect(vol?.createdAt).toMatch(ISO_DATE);
    createdAt = vol?.createdAt ?? '';
  });

  it('docker run: Get, Get, Mount, Get, Unmount, Get, Mount, Get, (runs) Unmount', async () => {
    expect((await post('VolumeDriver.Get', { Name: 'v1' })).body).toEqual(getReply(undefined));
    expect((await post('VolumeDriver.Get', { Name: 'v1' })).body).toEqual(getReply(undefined));

    // First pair: container create (copy-up check).
    expect((await post('VolumeDriver.Mount', { Name: 'v1', ID: ID_1 })).body).toEqual({
      Mountpoint: mountpoint(),
      Err: '',
    });
    expect((await post('VolumeDriver.Get', { Name: 'v1' })).body).toEqual(getReply({ device: '/dev/loop0' }));
    expect((await post('VolumeDriver.Unmount', { Name: 'v1', ID: ID_1 })).body).toEqual({ Err: '' });
    expect((await post('VolumeDriver.Get', { Name: 'v1' })).body).toEqual(getReply(undefined));

    // Second pair: container start, with a new ID.
    expect((await post('VolumeDriver.Mount', { Name: 'v1', ID: ID_2 })).body).toEqual({
      Mountpoint: mountpoint(),
      Err: '',
    });
    expect((await post('VolumeDriver.Get', { Name: 'v1' })).body).toEqual(getReply({ device: '/dev/loop0' }));
    // While the container runs, `docker volume ls` shows the mountpoint.
    expect((await post('VolumeDriver.List', {})).body).toEqual({
      Volumes: [{ Name: 'v1', Mountpoint: mountpoint(), CreatedAt: createdAt }],
      Err: '',
    });
    expect((await post('VolumeDriver.Path', { Name: 'v1' })).body).toEqual({
      Mountpoint: mountpoint(),
      Err: '',
    });
    expect((await post('VolumeDriver.Unmount', { Name: 'v1', ID: ID_2 })).body).toEqual({ Err: '' });

    // Two full mount cycles, one mkfs (the filesystem stays in the image), nothing left attached.
    expect(t.mounter.count('mount')).toBe(2);
    expect(t.mounter.count('mkfs')).toBe(1);
    expect(t.mounter.table.size).toBe(0);
    expect(t.loop.attached()).toEqual([]);
  });

  it('docker volume ls and inspect: List, Get', async () => {
    expect(await post('VolumeDriver.List', {})).toEqual({
      status: 200,
      body: { Volumes: [{ Name: 'v1', Mountpoint: '', CreatedAt: createdAt }], Err: '' },
    });
    expect((await post('VolumeDriver.Get', { Name: 'v1' })).body).toEqual(getReply(undefined));
  });

  it('docker volume rm: Get, Get, Remove, List', async () => {
    expect((await post('VolumeDriver.Get', { Name: 'v1' })).body).toEqual(getReply(undefined));
    expect((await post('VolumeDriver.Get', { Name: 'v1' })).body).toEqual(getReply(undefined));
    expect(await post('VolumeDriver.Remove', { Name: 'v1' })).toEqual({ status: 200, body: { Err: '' } });
    expect((await post('VolumeDriver.List', {})).body).toEqual({ Volumes: [], Err: '' });
    expect(existsSync(join(t.config.local.imageDir, 'v1.img'))).toBe(false);
    // Removing again (dockerd may retry after a lost reply) is success.
    expect((await post('VolumeDriver.Remove', { Name: 'v1' })).body).toEqual({ Err: '' });
  });
});

/**
 * Sends one raw HTTP request for Mount and returns the connection; `hangUp` (when given) is how the
 * caller leaves right after sending. `closed` resolves when the connection is gone.
 */
function mountRequest(name: string, id: string, hangUp?: (socket: Socket) => void) {
  const body = JSON.stringify({ Name: name, ID: id });
  // The server's end of this connection: its 'close' is when the daemon knows the caller is gone.
  const serverSide = new Promise<void>((resolve) =>
    sockets[0]!.server.once('connection', (s: Socket) => s.once('close', () => resolve())),
  );
  const socket = connect(sock, () => {
    socket.write(
      `POST /VolumeDriver.Mount HTTP/1.1\r\nHost: plugin\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    hangUp?.(socket);
  });
  socket.on('error', () => undefined);
  socket.resume();
  const clientSide = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  return { socket, closed: Promise.all([clientSide, serverSide]) };
}

describe('a Mount whose reply never reaches the caller', () => {
  /** Waits (bounded) until `name` was unmounted here and has no mount left, in store and kernel. */
  async function mountUndone(name: string): Promise<void> {
    const target = join(t.config.mountRoot, name);
    await pollUntil(
      async () => {
        const mounted = t.mounter.calls.some((c) => c.op === 'unmount' && c.path === target);
        const left = (await t.store.getMounts(name)).length > 0 || t.mounter.table.has(target);
        return mounted && !left ? true : undefined;
      },
      { timeoutMs: 5000, initialDelayMs: 5, maxDelayMs: 100, what: `the mount of ${name} to be undone` },
    );
  }

  it('is undone when the caller half-closed after sending it, so Remove is not blocked forever', async () => {
    expect((await post('VolumeDriver.Create', { Name: 'lost1', Opts: { size: '64M' } })).body.Err).toBe('');
    mountRequest('lost1', ID_1, (s) => s.end()); // the request, then FIN: no reply can come back
    await mountUndone('lost1');
    expect((await post('VolumeDriver.Remove', { Name: 'lost1' })).body).toEqual({ Err: '' });
  });

  it('is undone when the caller hung up while the mount was still running (dockerd gave up)', async () => {
    expect((await post('VolumeDriver.Create', { Name: 'lost2', Opts: { size: '64M' } })).body.Err).toBe('');
    const gate = t.mounter.holdNext('mount', join(t.config.mountRoot, 'lost2'));
    const caller = mountRequest('lost2', ID_1);
    await gate.reached;
    caller.socket.destroy(); // gone while the mount is still in the kernel's hands
    await caller.closed;
    gate.release();
    await mountUndone('lost2');
    expect((await post('VolumeDriver.Remove', { Name: 'lost2' })).body).toEqual({ Err: '' });
    expect(await t.store.getVolume('lost2')).toBeUndefined();
  });

  it('a delivered reply keeps its mount, and undoing another mount of the volume leaves it alone', async () => {
    expect((await post('VolumeDriver.Create', { Name: 'lost3', Opts: { size: '64M' } })).body.Err).toBe('');
    const gate = t.mounter.holdNext('mount', join(t.config.mountRoot, 'lost3'));
    const gone = mountRequest('lost3', ID_2);
    await gate.reached;
    const heard = post('VolumeDriver.Mount', { Name: 'lost3', ID: ID_1 }); // waits for the volume's lock
    gone.socket.destroy();
    await gone.closed;
    gate.release();
    expect((await heard).body).toEqual({ Mountpoint: join(t.config.mountRoot, 'lost3'), Err: '' });
    await pollUntil(
      async () => {
        const [m] = await t.store.getMounts('lost3');
        return m && Object.keys(m.refs).join() === ID_1 ? true : undefined;
      },
      {
        timeoutMs: 5000,
        initialDelayMs: 5,
        maxDelayMs: 100,
        what: 'the unheard mount of lost3 to be undone',
      },
    );
    expect(t.mounter.table.has(join(t.config.mountRoot, 'lost3'))).toBe(true);
    expect((await post('VolumeDriver.Unmount', { Name: 'lost3', ID: ID_1 })).body.Err).toBe('');
    expect((await post('VolumeDriver.Remove', { Name: 'lost3' })).body).toEqual({ Err: '' });
  });
});

describe('the socket file', () => {
  it('is a socket with mode 0600', async () => {
    const st = await stat(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('cannot be served twice: the second server gets CONFLICT and the first keeps serving', async () => {
    const err = await servePluginSockets(t.manager, t.runtime.log, {
      socketDir: t.config.socketDir,
      prefix: 'stowage-',
      drivers: ['local'],
    }).catch((e: unknown) => e);
    expect(isStowageError(err, 'CONFLICT')).toBe(true);
    expect((err as Error).message).toBe(
      `another process already serves ${sock}; stop it (is stowage already running?)`,
    );
    expect((await post('Plugin.Activate', '')).body.Implements).toEqual(['VolumeDriver']);
  });

  it('left by a process that is gone is replaced', async () => {
    const dir = join(t.dir, 'stale');
    await mkdir(dir);
    const path = join(dir, 'stowage-local.sock');
    const holder = socketHolder(path);
    await holder.ready;
    holder.child.kill('SIGKILL'); // dies without removing its socket file
    await holder.exited;
    expect((await lstat(path)).isSocket()).toBe(true);

    const mine = await servePluginSockets(t.manager, t.runtime.log, {
      socketDir: dir,
      prefix: 'stowage-',
      drivers: ['local'],
    });
    try {
      expect(mine.map((s) => s.path)).toEqual([path]);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect((await callPlugin(path, 'VolumeDriver.Capabilities', {})).body).toEqual({
        Capabilities: { Scope: 'local' },
        Err: '',
      });
    } finally {
      await closePluginSockets(mine, t.runtime.log);
    }
  });

  it('is refused, and left untouched, when a file that is not a socket is at its path', async () => {
    const dir = join(t.dir, 'not-a-socket');
    await mkdir(dir);
    const path = join(dir, 'stowage-local.sock');
    await writeFile(path, 'somebody else’s file\n');

    const err = await servePluginSockets(t.manager, t.runtime.log, {
      socketDir: dir,
      prefix: 'stowage-',
      drivers: ['local'],
    }).catch((e: unknown) => e);
    expect(isStowageError(err, 'CONFLICT')).toBe(true);
    expect((err as Error).message).toBe(
      `${path} exists and is not a socket; move it away before starting stowage`,
    );
    expect(await readFile(path, 'utf8')).toBe('somebody else’s file\n');
  });

  it('is removed by closePluginSockets, and nothing answers there any more', async () => {
    const dir = join(t.dir, 'closing');
    const own = await servePluginSockets(t.manager, t.runtime.log, {
      socketDir: dir,
      prefix: 'stowage-',
      drivers: ['local'],
    });
    const path = join(dir, 'stowage-local.sock');
    expect((await callPlugin(path, 'Plugin.Activate', '')).status).toBe(200);

    await closePluginSockets(own, t.runtime.log);
    expect(existsSync(path)).toBe(false);
    await expect(callPlugin(path, 'Plugin.Activate', '')).rejects.toThrow(/ENOENT/);
  });
});
