import { pino } from 'pino';
import { type Config, loadConfig } from '../../src/config.js';
import type {
  Driver,
  DriverContext,
  DriverFactory,
  StateView,
  Timeouts,
  VolumeInput,
} from '../../src/core/driver.js';
import type { VolumeRecord } from '../../src/state/store.js';
import { FakeFileOps } from '../fakes/fake-file-ops.js';
import { FakeLoopDevices } from '../fakes/fake-loop.js';
import { FakeMounter } from '../fakes/fake-mounter.js';
import { TEST_HOST } from './runtime.js';

/**
 * A driver on its own, without the VolumeManager: the context the composition root would inject
 * (over the fake kernel), and the inputs and records the VolumeManager would hand it. For a driver
 * inside the whole runtime, use createTestRuntime (runtime.ts).
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
  Pick<DriverContext, 'stagingDir'> & {
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
 * The config as the daemon loads it (`flags` over an empty config file, with `driver` enabled) and
 * the context the runtime builds from it: the host id, the timeouts and the staging directory.
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
    ...over,
  });
  return { ctx, config };
}

/** The one place the tests call a driver factory (should its signature change, only this does). */
export function buildDriver(factory: DriverFactory, ctx: DriverContext, config: Config): Driver {
  return factory(ctx, config);
}

export interface VolumeInputOptions {
  /**
   * The volume's record across attempts: given, the call resumes a Create that noted these
   * (even none); what provision notes is merged into this same object.
   */
  notes?: Record<string, unknown>;
  /** The record's creation time (default 2026-01-01T00:00:00.000Z). */
  createdAt?: string;
}

/**
 * What the VolumeManager's Create hands provision(): `raw` as the driver parses it. `notes` is
 * what provision noted through this input (the object given as `o.notes`, else a new one).
 */
export function volumeInput(
  driver: Driver,
  name: string,
  raw: Record<string, string> = {},
  o: VolumeInputOptions = {},
): VolumeInput & { readonly notes: Record<string, unknown> } {
  const parsed = driver.parseOptions(raw);
  const notes = o.notes ?? {};
  return {
    name,
    options: parsed.values,
    givenOptions: parsed.given,
    resuming: o.notes !== undefined,
    createdAt: o.createdAt ?? '2026-01-01T00:00:00.000Z',
    noted: { ...notes },
    note: async (fields) => {
      Object.assign(notes, fields);
    },
    notes,
  };
}

/** The record the store keeps of `input`'s volume: by default ready, retained, not adopted, no fields. */
export function volumeRecord(
  driver: string,
  input: VolumeInput,
  over: Partial<VolumeRecord> = {},
): VolumeRecord {
  return {
    name: input.name,
    driver,
    options: input.options,
    givenOptions: input.givenOptions,
    removePolicy: 'retain',
    adopted: false,
    createdAt: input.createdAt,
    status: 'ready',
    fields: {},
    ...over,
  };
}
