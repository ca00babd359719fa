import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import { type Config, loadConfig } from '../../src/config.js';
import type { DriverRegistry } from '../../src/core/registry.js';
import type { VolumeManager } from '../../src/core/volume-manager.js';
import type { StowageMetrics } from '../../src/metrics/metrics.js';
import { builtinRegistry, createRuntime, type Runtime } from '../../src/runtime.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import type { StateStore } from '../../src/state/store.js';
import { FakeFileOps } from '../fakes/fake-file-ops.js';
import { FakeLoopDevices } from '../fakes/fake-loop.js';
import { FakeMounter } from '../fakes/fake-mounter.js';

export const TEST_HOST = 'test-host';

export interface TestRuntime {
  /** The temp directory holding dataDir (state.db, images, mountpoints) and anything else. */
  dir: string;
  config: Config;
  runtime: Runtime;
  manager: VolumeManager;
  store: StateStore;
  mounter: FakeMounter;
  loop: FakeLoopDevices;
  files: FakeFileOps;
  /** Closes the store and deletes the temp directory (unless it was shared from another runtime). */
  cleanup(): Promise<void>;
}

export interface TestRuntimeOptions {
  /** Config flags over the defaults below, e.g. `{ timeouts: { lockWaitMs: 50 } }`. */
  flags?: Record<string, unknown>;
  /** A registry with extra drivers; list their names in `flags.drivers` to enable them. */
  registry?: DriverRegistry;
  /** A second runtime on the same host: same dataDir (so the same SQLite file) and same fakes. */
  sameHostAs?: TestRuntime;
  /** Another store on the runtime's state file (one that observes calls), or an etcd store. */
  store?: (path: string) => StateStore;
  /** Where the runtime logs (default: nowhere), for a test that checks a warning was written. */
  log?: Logger;
  /** Metrics the runtime feeds (as the daemon's does with metrics.listen set). */
  metrics?: StowageMetrics;
}

/**
 * The real composition root (createRuntime: real config, real SQLite store, real locks, real local
 * driver) over the fake kernel, with a silent logger. Nothing needs root or touches the host.
 */
export async function createTestRuntime(opts: TestRuntimeOptions = {}): Promise<TestRuntime> {
  const shared = opts.sameHostAs;
  const dir = shared?.dir ?? (await mkdtemp(join(tmpdir(), 'stowage-unit-')));
  // An explicit empty config file: without one, loadConfig reads /etc/stowage/config.yaml when the
  // machine has one, and the tests would depend on it.
  const file = join(dir, 'config.yaml');
  if (!shared) await writeFile(file, '');
  const config = loadConfig({
    file,
    env: {},
    flags: {
      dataDir: join(dir, 'data'),
      hostId: TEST_HOST,
      socketDir: join(dir, 'plugins'),
      ...opts.flags,
    },
  });
  const mounter = shared?.mounter ?? new FakeMounter();
  const loop = shared?.loop ?? new FakeLoopDevices(mounter);
  const files = shared?.files ?? new FakeFileOps(mounter);
  const store = opts.store ? opts.store(config.state) : new SqliteStore(config.state);
  const runtime = createRuntime(config, {
    mounter,
    loop,
    files,
    probeTcp: async (host) => ({ ok: mounter.nfsServers.has(host), detail: 'fake probe' }),
    store,
    log: opts.log ?? pino({ level: 'silent' }),
    registry: opts.registry ?? (await builtinRegistry()),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
  });
  return {
    dir,
    config,
    runtime,
    manager: runtime.manager,
    store,
    mounter,
    loop,
    files,
    cleanup: async () => {
      await runtime.close();
      if (!shared) await rm(dir, { recursive: true, force: true });
    },
  };
}
