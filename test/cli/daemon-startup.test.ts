import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { registerBuiltins } from '../../drivers/index.js';
import { StowageError } from '../../src/base/errors.js';
import { type DaemonOptions, type RunningDaemon, startDaemon } from '../../src/cli/daemon.js';
import type { DoctorCheck } from '../../src/core/driver.js';
import { parseOptions } from '../../src/core/options.js';
import { DriverRegistry } from '../../src/core/registry.js';
import type { PropagationVerdict } from '../../src/mount/propagation.js';
import type { Runtime } from '../../src/runtime.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import type { IntentRecord } from '../../src/state/store.js';
import { callPlugin } from '../helpers/plugin-client.js';
import {
  createTestRuntime,
  TEST_HOST,
  type TestRuntime,
  type TestRuntimeOptions,
} from '../helpers/runtime.js';

/**
 * The daemon's start (startDaemon) over the fake kernel, with real sockets: it refuses a mount
 * namespace whose mounts dockerd would not see, serves its sockets within the start budget whatever
 * the store and the backends do, and finishes registering and reconciling in the background.
 */

/** A store whose reconcile step (listIntents) can be held or made to fail. */
class ControlledStore extends SqliteStore {
  listIntentsCalls = 0;
  /** Failures for the next listIntents calls, in order. */
  readonly failures: Error[] = [];
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.open?.();
    this.gate = undefined;
  }

  override async listIntents(host: string): Promise<IntentRecord[]> {
    this.listIntentsCalls++;
    const failure = this.failures.shift();
    if (failure) throw failure;
    await this.gate;
    return super.listIntents(host);
  }
}

interface Logged {
  level: number;
  msg: string;
  [key: string]: unknown;
}

let t: TestRuntime;
let store: ControlledStore;
let daemon: RunningDaemon | undefined;
let logged: Logged[];

afterEach(async () => {
  store?.release();
  await daemon?.stop();
  daemon = undefined;
  await t?.cleanup();
});

async function setUp(opts: TestRuntimeOptions = {}): Promise<Runtime> {
  t = await createTestRuntime({ ...opts, store: (path) => (store = new ControlledStore(path)) });
  logged = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => logged.push(JSON.parse(line) as Logged) });
  return { ...t.runtime, log };
}

const SHARED: PropagationVerdict = { ok: true, why: 'host namespace unknown' };

function start(rt: Runtime, opts: DaemonOptions = {}): Promise<RunningDaemon> {
  return startDaemon(rt, { checkPropagation: async () => SHARED, stopGraceMs: 2000, ...opts }).then((d) => {
    daemon = d;
    return d;
  });
}

function socket(driver = 'local'): string {
  return join(t.config.socketDir, `${t.config.socketPrefix}${driver}.sock`);
}

/** Whether the driver's socket answers Plugin.Activate as dockerd needs it to enable the plugin. */
async function activates(driver = 'local'): Promise<boolean> {
  const res = await callPlugin(socket(driver), 'Plugin.Activate', '', 2000);
  return JSON.stringify(res.body.Implements) === '["VolumeDriver"]';
}

function messages(level?: number): string[] {
  return logged.filter((l) => level === undefined || l.level === level).map((l) => l.msg);
}

describe('startDaemon: mount propagation', () => {
  it('refuses to start, before touching the store or serving, when its mounts would be invisible', async () => {
    const rt = await setUp();
    const error = new StowageError('CONFIG', 'the volumes directory ... private propagation ...');
    const seen: { path: string; bindDir: string | undefined }[] = [];
    await expect(
      start(rt, {
        checkPropagation: async (path, opts) => {
          seen.push({ path, bindDir: opts.bindDir });
          return { ok: false, mount: undefined, error };
        },
      }),
    ).rejects.toBe(error);
    // The volumes directory is checked; the fix binds the data directory that holds it.
    expect(seen).toEqual([{ path: t.config.mountRoot, bindDir: join(t.dir, 'data') }]);
    expect(existsSync(socket())).toBe(false);
    expect(store.listIntentsCalls).toBe(0);
    expect(await t.store.listHosts()).toEqual([]);
  });

  it('logs a shared mount’s warning and starts', async () => {
    const rt = await setUp();
    const mount = {
      mountPoint: '/var/lib/stowage',
      source: '/dev/vda1',
      fsType: 'ext4',
      options: 'rw',
      majorMinor: '254:1',
      root: '/',
    };
    await start(rt, {
      checkPropagation: async () => ({
        ok: true,
        why: 'shared',
        mount,
        warning: 'peer group 77 is not on the host',
      }),
    });
    expect(await activates()).toBe(true);
    expect(messages(40)).toContain('peer group 77 is not on the host');
  });
});

describe('startDaemon: start budget', () => {
  it('registers and reconciles before serving when that is quick', async () => {
    const rt = await setUp();
    const d = await start(rt);
    expect(d.startup.isDone()).toBe(true);
    expect((await t.store.listHosts()).map((h) => h.id)).toEqual([TEST_HOST]);
    expect(await activates()).toBe(true);
    expect(logged.find((l) => l.msg === 'stowage daemon ready')).toMatchObject({ reconciled: true });
  });

  it('serves once the budget is spent while reconcile hangs, and finishes it in the background', async () => {
    const rt = await setUp();
    store.hold(); // e.g. waiting on a store that does not answer
    const began = Date.now();
    const d = await start(rt, { startBudgetMs: 200 });
    expect(Date.now() - began).toBeLessThan(2000);
    expect(d.startup.isDone()).toBe(false);
    expect(await activates()).toBe(true);
    // Requests are answered meanwhile.
    const created = await callPlugin(socket(), 'VolumeDriver.Create', { Name: 'v1', Opts: {} });
    expect(created.body).toEqual({ Err: '' });
    expect(messages(40)).toContain(
      'registering this host and reconciling take longer than the start budget; serving the sockets meanwhile, they go on in the background',
    );
    expect(logged.find((l) => l.msg === 'stowage daemon ready')).toMatchObject({ reconciled: false });

    store.release();
    await d.startup.done;
    expect(d.startup.isDone()).toBe(true);
    expect(store.listIntentsCalls).toBe(1); // the same attempt went on, none was started next to it
    expect(messages(30)).toContain('reconciled state with this host');
  });

  it('retries with backoff when the store is unavailable at start, serving meanwhile', async () => {
    const rt = await setUp();
    store.failures.push(new StowageError('UNAVAILABLE', 'etcd did not answer'));
    const d = await start(rt);
    expect(d.startup.isDone()).toBe(false);
    expect(await activates()).toBe(true);
    await d.startup.done; // the retry, a second later
    expect(store.listIntentsCalls).toBe(2);
    expect(logged.find((l) => l.msg.startsWith('registering or reconciling could not finish'))).toMatchObject(
      {
        level: 40,
        err: 'etcd did not answer',
        retryInMs: 1000,
      },
    );
  });

  it('serves and retries after another failure too', async () => {
    const rt = await setUp();
    store.failures.push(new StowageError('INTERNAL', 'umount: target is busy'));
    const d = await start(rt);
    expect(await activates()).toBe(true);
    expect(logged.find((l) => l.msg === 'registering or reconciling failed; retrying')).toMatchObject({
      level: 50,
      err: 'umount: target is busy',
    });
    await d.startup.done;
  });

  it('does not start on a configuration error within the budget: it will not fix itself', async () => {
    const rt = await setUp();
    const config = new StowageError('CONFIG', 'etcd rejected the client certificate; check etcd.cert');
    store.failures.push(config);
    await expect(start(rt)).rejects.toBe(config);
    expect(existsSync(socket())).toBe(false);
  });

  it('stop() during a background attempt waits for it (bounded), then closes the store', async () => {
    const rt = await setUp();
    store.hold();
    const d = await start(rt, { startBudgetMs: 50, stopGraceMs: 100 });
    const began = Date.now();
    await d.stop();
    daemon = undefined;
    expect(Date.now() - began).toBeGreaterThanOrEqual(90);
    expect(existsSync(socket())).toBe(false);
  });
});

describe('startDaemon: driver checks', () => {
  /** A registry with a driver `checked` whose doctor is `doctor`; it serves nothing else. */
  async function withDoctor(doctor: () => Promise<DoctorCheck[]>): Promise<DriverRegistry> {
    const registry = new DriverRegistry();
    await registerBuiltins(registry);
    registry.register('checked', () => ({
      name: 'checked',
      scope: 'local',
      needsAttach: false,
      lazyUnmount: false,
      optionSpecs: {},
      parseOptions: (raw) => parseOptions('checked', {}, raw),
      provision: async () => ({ fields: {}, adopted: false, removePolicy: 'delete' }),
      destroy: async () => undefined,
      abandon: async () => undefined,
      mountSpec: () => {
        throw new StowageError('NOT_SUPPORTED', 'nothing to mount');
      },
      describe: () => ({}),
      doctor,
    }));
    return registry;
  }

  it('run in the background: a check that never answers does not hold up the sockets', async () => {
    const rt = await setUp({
      registry: await withDoctor(() => new Promise<DoctorCheck[]>(() => undefined)),
      flags: { drivers: ['local', 'checked'] },
    });
    await start(rt);
    expect(await activates('checked')).toBe(true);
    expect(await activates('local')).toBe(true);
  });

  it('log a check that throws as a warning only', async () => {
    const rt = await setUp({
      registry: await withDoctor(async () => {
        throw new Error('imds did not answer');
      }),
      flags: { drivers: ['checked'] },
    });
    const d = await start(rt);
    await d.doctor;
    expect(logged.find((l) => l.msg === 'imds did not answer')).toMatchObject({
      level: 40,
      driver: 'checked',
      check: 'checked',
    });
    expect(await activates('checked')).toBe(true);
  });

  it('report each failed check by name', async () => {
    const rt = await setUp({
      registry: await withDoctor(async () => [
        {
          name: 'nfs: server',
          ok: false,
          detail: '127.0.0.1:2049 refused; NFS volumes cannot be mounted until it answers',
        },
        { name: 'nfs: tools', ok: true, detail: 'mount.nfs found' },
      ]),
      flags: { drivers: ['checked'] },
    });
    const d = await start(rt);
    await d.doctor;
    expect(logged.filter((l) => l.check !== undefined).map((l) => [l.level, l.check, l.msg])).toEqual([
      [40, 'nfs: server', '127.0.0.1:2049 refused; NFS volumes cannot be mounted until it answers'],
    ]);
  });
});
