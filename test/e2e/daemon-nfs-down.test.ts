import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callPlugin } from '../helpers/plugin-client.js';
import { DaemonProcess } from './daemon-process.js';
import { freePort } from './nfs/ganesha.js';

/** A configured NFS server that is down warns at start and in doctor; it never stops the daemon. */
let base: string;
let daemon: DaemonProcess;
let deadPort: number;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-nfsdown-'));
  deadPort = await freePort(); // free now, so nothing answers there
  const configFile = join(base, 'config.yaml');
  await writeFile(
    configFile,
    `nfs:\n  server: 127.0.0.1\n  share: /exports\n  mountOptions: [port=${deadPort}]\n`,
  );
  daemon = new DaemonProcess({
    dataDir: join(base, 'data'),
    socketDir: join(base, 'plugins'),
    logFile: join(base, 'daemon.log'),
    drivers: ['local', 'nfs'],
    configFile,
  });
  await daemon.start();
});

afterAll(async () => {
  await daemon?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

describe('daemon with an unreachable NFS server', () => {
  it('starts, serves both drivers, and logs a clear warning', async () => {
    for (const driver of ['local', 'nfs']) {
      const res = await callPlugin(daemon.socket(driver), 'VolumeDriver.Capabilities', {});
      // One host's SQLite store: even nfs volumes' names are this host's own (global needs etcd).
      expect(res.body.Capabilities).toEqual({ Scope: 'local' });
    }
    const log = await readFile(join(base, 'daemon.log'), 'utf8');
    const warning = log.split('\n').find((l) => l.includes('"check":"nfs: server"'));
    expect(warning).toBeDefined();
    expect(JSON.parse(warning!).msg).toMatch(
      new RegExp(
        `^127\\.0\\.0\\.1:${deadPort} .*ECONNREFUSED.*; NFS volumes cannot be created or mounted until it answers$`,
      ),
    );
  });

  it('reports the server in stowage doctor', async () => {
    const res = await daemon.cli(['--drivers', 'local,nfs', 'doctor', '--json']);
    const checks = JSON.parse(res.stdout) as { name: string; ok: boolean; detail: string }[];
    expect(checks.find((c) => c.name === 'nfs: server')).toMatchObject({ ok: false });
    expect(checks.find((c) => c.name === 'store')).toMatchObject({ ok: true });
    expect(res.exitCode).toBe(1);
  });
});
