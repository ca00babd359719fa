import { pino } from 'pino';
import { type Config, loadConfig } from '../../src/config.js';
import type { Driver, DriverContext, DriverFactory, StateView, Timeouts } from '../../src/core/driver.js';
import { FakeFileOps } from '../fakes/fake-file-ops.js';
import { FakeLoopDevices } from '../fakes/fake-loop.js';
import { FakeMounter } from '../fakes/fake-mounter.js';
import { TEST_HOST } from './runtime.js';

/**
 * A driver on its own, without the VolumeManager: the context the composition root would inject,
 * over the fake kernel. For a driver inside the whole runtime, use createTestRuntime (runtime.ts).
 */

/** Deadlines of a second: the fakes answer at once, so nothing in a unit test waits that long. */
export const UNIT_TIMEOUTS: Timeouts = {
  commandMs: 1000,
  mountMs: 1000,
  mkfsMs: 1000,
  deviceWaitMs: 1000,
  lockWaitMs: 1000,
};

/** The shared state of a single host that has nothing else: no hosts recorded, no mounts, no leases. */
export const ALONE: StateView = {
  hosts: async () => [],
  mounts: async () => [],
  liveHosts: async () => undefined,
};

export type DriverContextOptions = Partial<DriverContext> &
  Pick<DriverContext, 'config' | 'stagingDir'> & {
    /** The fake kernel; loop devices and file operations are made over it unless given. */
    mounter?: FakeMounter;
  };

/** A driver's context over the fake kernel, with a silent log, UNIT_TIMEOUTS and ALONE by default. */
export function driverContext(o: DriverContextOptions): DriverContext {
  const mounter = o.mounter ?? new FakeMounter();
  return {
    host: TEST_HOST,
    log: pino({ level: 'silent' }),
    loop: new FakeLoopDevices(mounter),
    files: new FakeFileOps(mounter),
    probeTcp: async () => ({ ok: true, detail: 'fake probe' }),
    timeouts: UNIT_TIMEOUTS,
    state: ALONE,
    ...o,
    mounter,
  };
}

/**
 * The context as the runtime builds it from the config (the daemon's flags over an empty config
 * file): the driver's own section, the host id, the timeouts and the staging directory.
 */
export function driverContextFromConfig(
  driver: 'local' | 'nfs' | 'efs' | 'ebs',
  flags: Record<string, unknown> & { dataDir: string },
  over: Partial<DriverContext> & { mounter?: FakeMounter } = {},
): { ctx: DriverContext; config: Config } {
  const config = loadConfig({ file: '/dev/null', env: {}, flags: { drivers: [driver], ...flags } });
  const ctx = driverContext({
    host: config.hostId,
    timeouts: config.timeouts,
    stagingDir: config.stagingDir,
    config: config[driver],
    ...over,
  });
  return { ctx, config };
}

/**
 * The one place the tests call a driver factory: were factories to take their config section as
 * a second argument, only this line changes.
 */
export function buildDriver<D extends Driver = Driver>(factory: DriverFactory, ctx: DriverContext): D {
  return factory(ctx) as D;
}
