import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { activates, socketPath, waitUntilServing } from '../../src/docker/activate.js';

/**
 * `stowage ready`'s client against a real HTTP server on a unix socket in a temp directory:
 * an answering socket is ready, a missing or wrong one times out with its path named.
 */

let dir: string;
const servers: Server[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-activate-'));
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  await rm(dir, { recursive: true, force: true });
});

/** Serves `reply` to POST /Plugin.Activate on `path`, as a plugin would. */
async function serve(path: string, reply: unknown = { Implements: ['VolumeDriver'] }): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/Plugin.Activate') {
        res.writeHead(404).end('{}');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/vnd.docker.plugins.v1+json' });
      res.end(JSON.stringify(reply));
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  servers.push(server);
}

describe('socketPath', () => {
  it('is <socketDir>/<socketPrefix><driver>.sock, as the daemon serves it', () => {
    expect(socketPath({ socketDir: '/run/docker/plugins', socketPrefix: 'stowage-' }, 'nfs')).toBe(
      '/run/docker/plugins/stowage-nfs.sock',
    );
  });
});

describe('activates', () => {
  it('is true for a volume plugin, false for no socket or another kind of plugin', async () => {
    const good = join(dir, 'good.sock');
    const other = join(dir, 'other.sock');
    await serve(good);
    await serve(other, { Implements: ['NetworkDriver'] });
    expect(await activates(good, 1000)).toBe(true);
    expect(await activates(other, 1000)).toBe(false);
    expect(await activates(join(dir, 'none.sock'), 1000)).toBe(false);
  });
});

describe('waitUntilServing', () => {
  it('returns nothing once every socket answers, including one that comes up late', async () => {
    const a = socketPath({ socketDir: dir, socketPrefix: 'stowage-' }, 'local');
    const b = socketPath({ socketDir: dir, socketPrefix: 'stowage-' }, 'nfs');
    await serve(a);
    const late = setTimeout(() => void serve(b), 200);
    try {
      const started = Date.now();
      expect(await waitUntilServing([a, b], 5000)).toEqual([]);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      clearTimeout(late);
    }
  });

  it('names the socket that never answered, with why, once the deadline passes', async () => {
    const a = join(dir, 'stowage-local.sock');
    const missing = join(dir, 'stowage-nfs.sock');
    await serve(a);
    const started = Date.now();
    const left = await waitUntilServing([a, missing], 400);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(left).toEqual([{ path: missing, reason: 'ENOENT' }]);
  });
});
