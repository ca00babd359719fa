import { driverTraits } from '../drivers/catalog.js';
import { registerBuiltins } from '../drivers/index.js';
import { StowageError } from './base/errors.js';
import type { Logger } from './base/logger.js';
import { timeMethods } from './base/timed-methods.js';
import type { AwsCredentials, CloudCallObserver } from './cloud/client-options.js';
import { SdkEc2 } from './cloud/ec2.js';
import { SdkEc2Network } from './cloud/ec2-network.js';
import { SdkEfs } from './cloud/efs.js';
import { DEFAULT_IMDS_ENDPOINT, type IdentitySource, Imdsv2, StaticIdentity } from './cloud/imds.js';
import { Ec2NodeLookup } from './cloud/node-lookup.js';
import type { Config } from './config.js';
import { DoorRequests } from './core/door-requests.js';
import type { CloudClients, StateView, Timeouts } from './core/driver.js';
import { HostDirectory } from './core/hosts.js';
import { VolumeLocks } from './core/locks.js';
import { DriverRegistry } from './core/registry.js';
import { VolumeManager } from './core/volume-manager.js';
import type { StowageMetrics } from './metrics/metrics.js';
import { type CommandRunner, ProcessRunner } from './mount/exec.js';
import { type FileOps, SpawnFileOps } from './mount/file-ops.js';
import { type LoopDevices, LosetupLoopDevices } from './mount/loop.js';
import { LinuxMounter, type Mounter } from './mount/mounter.js';
import { probeTcp, type TcpProbe } from './net/tcp-probe.js';
import { type OpenStoreOptions, openStore, storeLocation } from './state/open.js';
import { SqliteStore } from './state/sqlite-store.js';
import type { CloseOptions, StateStore } from './state/store.js';
import { timedStore } from './state/timed-store.js';

export interface Runtime {
  config: Config;
  log: Logger;
  store: StateStore;
  mounter: Mounter;
  registry: DriverRegistry;
  manager: VolumeManager;
  /** This host's registration and the lookup of other nodes (through EC2 when a cloud driver is on). */
  hosts: HostDirectory;
  /** The AWS seams when a cloud driver is enabled. */
  cloud?: CloudClients;
  /** The daemon's metrics, when it serves them (metrics.listen); see src/metrics. */
  metrics?: StowageMetrics;
  /** Where the flexvolume executable and the CLI count their requests, for the daemon's metrics. */
  requests: DoorRequests;
  /** Closes the store; `exiting` as StateStore.close's. */
  close(opts?: CloseOptions): Promise<void>;
}

/** Seams a test may replace; everything else is built from the config. */
export interface RuntimeOverrides {
  log?: Logger;
  runner?: CommandRunner;
  mounter?: Mounter;
  loop?: LoopDevices;
  files?: FileOps;
  probeTcp?: TcpProbe;
  cloud?: CloudClients;
  store?: StateStore;
  registry?: DriverRegistry;
  /** The SQLite addon's path when it is not where the package manager put it (the flexvolume bundle). */
  nativeBinding?: string;
  /**
   * An etcd store keeps a watch-fed read cache for Get, Path and List (the daemon; `volumes ls`).
   * Off for processes that read a volume or two and exit: they read etcd directly. See open.ts.
   */
  readCache?: boolean;
  /** AWS credentials for this process's clients instead of the SDK's default chain (a PV's Secret). */
  awsCredentials?: AwsCredentials;
  /**
   * Metrics to feed (the daemon's, when metrics.listen is set): the store, mounter, drivers, locks,
   * AWS clients and reconcile report to it. Without it nothing is timed, at no cost.
   */
  metrics?: StowageMetrics;
}

/** Driver methods that are waits worth a histogram: attaching, and the block device showing up. */
const DRIVER_WAITS: ReadonlySet<string> = new Set(['attach', 'localDevice']);

/** The composition root: config -> logger, store, mounter, registry, manager. */
export function createRuntime(config: Config, o: RuntimeOverrides = {}): Runtime {
  const { log } = o;
  if (!log) {
    throw new StowageError(
      'INTERNAL',
      'createRuntime needs a logger: openRuntime() makes the configured one',
    );
  }
  const timeouts: Timeouts = {
    commandMs: config.timeouts.commandMs,
    mountMs: config.timeouts.mountMs,
    mkfsMs: config.timeouts.mkfsMs,
    deviceWaitMs: config.timeouts.deviceWaitMs,
    lockWaitMs: config.timeouts.lockWaitMs,
  };
  const { metrics } = o;
  const runner = o.runner ?? new ProcessRunner();
  let mounter =
    o.mounter ??
    new LinuxMounter(runner, { commandTimeoutMs: timeouts.commandMs, mkfsTimeoutMs: timeouts.mkfsMs });
  if (metrics) mounter = timeMethods(mounter, metrics.mountCall, new Set(['mount']));
  const loop = o.loop ?? new LosetupLoopDevices(runner, timeouts.commandMs);
  let store: StateStore;
  if (o.store) store = o.store;
  else {
    const where = storeLocation(config.state);
    if (where.kind !== 'sqlite') {
      throw new StowageError('INTERNAL', 'an etcd store is opened with openRuntime(), not createRuntime()');
    }
    store = new SqliteStore(where.path);
  }
  if (metrics) {
    store = timedStore(store, metrics.storeCall(store.kind));
    const onError = (err: Error) =>
      log.warn({ err: err.message }, "metrics: reading this host's records from the store failed");
    metrics.watchHost(store, config.hostId, onError);
  }
  const registry = o.registry;
  if (!registry) {
    throw new StowageError(
      'INTERNAL',
      'createRuntime needs a registry: openRuntime() loads the built-in drivers',
    );
  }
  const files = o.files ?? new SpawnFileOps(runner);
  const state: StateView = {
    hosts: () => store.listHosts(),
    mounts: (volume) => store.getMounts(volume),
    liveHosts: async () => (store.liveHosts ? store.liveHosts() : undefined),
  };
  const cloud =
    o.cloud ??
    (config.drivers.some((d) => driverTraits(d)?.usesAws)
      ? awsClients(config, o.awsCredentials, metrics?.cloudCall)
      : undefined);
  // Each factory takes its own section of the config (typed by its catalog entry).
  registry.enable(config.drivers, (name, factory) => {
    const driver = factory(
      {
        host: config.hostId,
        log: log.child({ driver: name }),
        mounter,
        loop,
        files,
        probeTcp: o.probeTcp ?? probeTcp,
        timeouts,
        stagingDir: config.stagingDir,
        state,
        ...(cloud ? { cloud } : {}),
      },
      config,
    );
    return metrics ? timeMethods(driver, metrics.driverCall(name), DRIVER_WAITS) : driver;
  });
  const locks = new VolumeLocks(store, {
    host: config.hostId,
    waitMs: timeouts.lockWaitMs,
    ttlMs: config.timeouts.lockTtlMs,
    onUnlockError: (volume, err) =>
      log.warn(
        { volume, err: err.message },
        `volume lock not released; it expires in ${config.timeouts.lockTtlMs} ms`,
      ),
    ...(metrics ? { onWait: metrics.lockWait } : {}),
  });
  const manager = new VolumeManager({
    host: config.hostId,
    mountRoot: config.mountRoot,
    store,
    registry,
    mounter,
    files,
    locks,
    timeouts,
    log,
    takeOverGone: config.hosts.takeOverGone,
    ...(metrics ? { onReconcileAction: metrics.reconcileAction } : {}),
  });
  const hosts = new HostDirectory({
    store,
    host: config.hostId,
    drivers: () => manager.drivers(),
    log,
    ...(cloud ? { nodes: new Ec2NodeLookup(cloud.ec2) } : {}),
  });
  return {
    config,
    log,
    store,
    mounter,
    registry,
    manager,
    hosts,
    ...(cloud ? { cloud } : {}),
    ...(metrics ? { metrics } : {}),
    requests: new DoorRequests({ store, host: config.hostId, log }),
    close: (opts) => store.close(opts),
  };
}

/** createRuntime with the configured store opened first (etcd's client is loaded only if used). */
export async function openRuntime(config: Config, o: RuntimeOverrides = {}): Promise<Runtime> {
  // pino is loaded only when no logger is handed in: the flexvolume executable brings its own.
  const log: Logger =
    o.log ??
    (await import('./log.js')).createLogger({
      level: config.log.level,
      file: config.log.file,
      base: { host: config.hostId },
    });
  let readCache: OpenStoreOptions['readCache'];
  if (o.readCache && !o.store) {
    const cacheLog = log.child({ component: 'etcd-read-cache' });
    readCache = { log: (level, msg, details) => cacheLog[level](details, msg) };
  }
  const opened =
    o.store ??
    (await openStore(config, {
      ...(o.nativeBinding ? { nativeBinding: o.nativeBinding } : {}),
      ...(readCache ? { readCache } : {}),
    }));
  return createRuntime(config, {
    ...o,
    log,
    store: opened,
    registry: o.registry ?? (await builtinRegistry()),
  });
}

/** A registry holding every driver that ships with stowage (each is enabled from the config). */
export async function builtinRegistry(): Promise<DriverRegistry> {
  const registry = new DriverRegistry();
  await registerBuiltins(registry);
  return registry;
}

/**
 * The AWS seams, built only when a cloud driver is enabled. Identity: static from config when
 * aws.instanceId is set, else IMDSv2. Region: config, $AWS_REGION, then the instance's own.
 */
function awsClients(config: Config, credentials?: AwsCredentials, observe?: CloudCallObserver): CloudClients {
  dropEmptyAwsVariables();
  const a = config.aws;
  let identity: IdentitySource;
  if (a.instanceId) {
    if (!a.availabilityZone) {
      throw new StowageError(
        'CONFIG',
        'aws.instanceId is set without aws.availabilityZone; give both or neither',
      );
    }
    identity = new StaticIdentity({
      instanceId: a.instanceId,
      availabilityZone: a.availabilityZone,
      region: a.region ?? a.availabilityZone.replace(/[a-z]$/, ''),
      ...(a.subnetId ? { subnetId: a.subnetId } : {}),
    });
  } else {
    identity = new Imdsv2(
      a.imdsEndpoint ?? process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT ?? DEFAULT_IMDS_ENDPOINT,
    );
  }
  const region =
    a.region ??
    process.env.AWS_REGION ??
    process.env.AWS_DEFAULT_REGION ??
    (async () => (await identity.identity()).region);
  const base = {
    region,
    maxAttempts: a.maxAttempts,
    requestTimeoutMs: a.requestTimeoutMs,
    ...(credentials ? { credentials } : {}),
    ...(observe ? { observe } : {}),
  };
  const ec2 = new SdkEc2({ ...base, ...(config.ebs.endpoint ? { endpoint: config.ebs.endpoint } : {}) });
  const efs = new SdkEfs({ ...base, ...(config.efs.endpoint ? { endpoint: config.efs.endpoint } : {}) });
  const network = new SdkEc2Network({
    ...base,
    ...(config.ebs.endpoint ? { endpoint: config.ebs.endpoint } : {}),
  });
  return { ec2, efs, network, identity };
}

/**
 * Deletes the AWS_* variables whose value is empty, before the SDK (or the region fallback above)
 * reads them. A Docker managed plugin's settable env defaults to "", and the SDK takes
 * AWS_REGION="" as a region (every call then fails) instead of looking further. Returns the names.
 */
export function dropEmptyAwsVariables(env: NodeJS.ProcessEnv = process.env): string[] {
  const dropped = Object.keys(env).filter((k) => k.startsWith('AWS_') && env[k] === '');
  for (const k of dropped) delete env[k];
  return dropped;
}
