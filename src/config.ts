import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import * as z from 'zod';
import {
  DEFAULT_DRIVERS,
  DRIVER_CONFIG_SECTIONS,
  DRIVER_NAMES,
  type DriverConfigSections,
  type DriverName,
} from '../drivers/catalog.js';
import { absPath, configKit, ms } from './base/config-kit.js';
import type { ConfigSection, SectionSchema, SectionValue } from './base/config-section.js';
import { StowageError } from './base/errors.js';
import { parseListenAddress } from './base/listen-address.js';
import { readEnvironment } from './config-env.js';
import { configFileOf } from './config-file.js';

/**
 * Re-exported for the tests that mount EFS-like shares by hand. (Defined in the driver's section:
 * drivers/efs/config.ts.)
 */
export { EFS_MOUNT_DEFAULTS } from '../drivers/efs/config.js';
export { DEFAULT_CONFIG_FILE } from './config-file.js';

/**
 * Each driver's section, keyed by the driver's name, as the driver declares it
 * (drivers/<name>/config.ts, named by its catalog entry): the driver names are not written here.
 */
type DriverSectionSchemas = { [N in DriverName]: SectionSchema<DriverConfigSections[N]> };
/** The sections as the drivers receive them (with their defaults that depend on dataDir). */
export type DriverSections = { [N in DriverName]: SectionValue<DriverConfigSections[N]> };

/** The one section of driver `name`, seen as any section (its own type is in DriverSections). */
const sectionOf = (name: DriverName): ConfigSection => DRIVER_CONFIG_SECTIONS[name];

// Object.fromEntries cannot keep a type per key; the mapped types above say what each key holds.
const driverSectionSchemas = Object.fromEntries(
  DRIVER_NAMES.map((name) => [name, sectionOf(name).schema(configKit)]),
) as DriverSectionSchemas;

function resolveDriverSections(parsed: Record<DriverName, unknown>, dataDir: string): DriverSections {
  return Object.fromEntries(
    DRIVER_NAMES.map((name) => [name, sectionOf(name).resolve(parsed[name], { dataDir })]),
  ) as DriverSections;
}

/** stowage's own keys, then one section per driver (`local`, `nfs`, ... from the catalog). */
export const ConfigSchema = z
  .object({
    /** This host's id in the store; defaults to the hostname. */
    hostId: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/, { message: 'must be a hostname-like id' })
      .default(hostname()),
    /** Base directory for everything stowage keeps on disk. */
    dataDir: absPath.default('/var/lib/stowage'),
    /**
     * The metadata store: a SQLite file (a path, or sqlite:/path; default <dataDir>/state.db) for
     * one host, or etcd://host:2379[,host:2379...]/prefix (etcds:// for TLS) shared by many.
     */
    state: z
      .string()
      .refine((s) => isAbsolute(s.replace(/^sqlite:/, '')) || /^etcds?:\/\//i.test(s), {
        message: 'must be an absolute SQLite file path or an etcd://host:port/prefix URL',
      })
      .optional(),
    etcd: z
      .object({
        /** PEM files: ca to trust the servers, cert + key for client-certificate auth. */
        ca: absPath.optional(),
        cert: absPath.optional(),
        key: absPath.optional(),
        username: z.string().min(1).optional(),
        /** Prefer passwordFile or $STOWAGE_ETCD_PASSWORD over a password in the file. */
        password: z.string().min(1).optional(),
        passwordFile: absPath.optional(),
        /** Every store call ends within this: an unreachable etcd fails fast. */
        requestTimeoutMs: ms.default(5_000),
        /** A host whose daemon stopped renewing its lease this long ago is gone. */
        leaseTtlSeconds: z.number().int().min(2).max(3600).default(15),
      })
      .strict()
      .prefault({}),
    hosts: z
      .object({
        /**
         * Take a volume over from a gone host (its lease expired) without preempt=true on the volume.
         * Off by default: a host that lost its network may still be writing.
         */
        takeOverGone: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    /** Where volumes are mounted (default <dataDir>/volumes). */
    mountRoot: absPath.optional(),
    /** Private mounts for provisioning, e.g. an NFS share root (default <dataDir>/staging). */
    stagingDir: absPath.optional(),
    socketDir: absPath.default('/run/docker/plugins'),
    socketPrefix: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_.-]*$/, { message: 'lower-case letters, digits, "_", "." and "-"' })
      .default('stowage-'),
    drivers: z
      .array(z.string().min(1))
      .min(1)
      .default([...DEFAULT_DRIVERS]),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
        /** Log to this file instead of stderr. */
        file: absPath.optional(),
      })
      .strict()
      .prefault({}),
    timeouts: z
      .object({
        commandMs: ms.default(30_000),
        mountMs: ms.default(30_000),
        mkfsMs: ms.default(120_000),
        deviceWaitMs: ms.default(30_000),
        lockWaitMs: ms.default(10_000),
        lockTtlMs: ms.default(10 * 60_000),
      })
      .strict()
      .prefault({}),
    aws: z
      .object({
        /** AWS region; default $AWS_REGION, then the instance's own (IMDS). */
        region: z.string().optional(),
        /** Static identity instead of instance metadata (tests, hosts without IMDS). */
        instanceId: z
          .string()
          .regex(/^i-[0-9a-f]{8,17}$/, { message: 'must be an instance id such as i-0123456789abcdef0' })
          .optional(),
        availabilityZone: z.string().optional(),
        subnetId: z
          .string()
          .regex(/^subnet-[0-9a-f]{8,17}$/, { message: 'must be a subnet id' })
          .optional(),
        /** IMDS endpoint; default $AWS_EC2_METADATA_SERVICE_ENDPOINT, then http://169.254.169.254. */
        imdsEndpoint: z.url().optional(),
        /** Attempts per AWS call, with the SDK's backoff for throttling and transient errors. */
        maxAttempts: z.number().int().min(1).max(20).default(5),
        requestTimeoutMs: ms.default(30_000),
      })
      .strict()
      .prefault({}),
    flexvolume: z
      .object({
        /** kubelet's root directory: pod and device mount paths must lie under it. */
        kubeletDir: absPath.default('/var/lib/kubelet'),
        /** The executable's log (stdout and stderr belong to kubelet); default <dataDir>/flexvolume.log. */
        logFile: absPath.optional(),
        /** Every call ends within this, well inside kubelet's 10 min for waitforattach. */
        callTimeoutMs: ms.default(300_000),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        /**
         * Serve Prometheus metrics at http://<listen>/metrics, e.g. 127.0.0.1:9477. Off when unset.
         * Only `stowage daemon` serves them (docs/metrics.md).
         */
        listen: z
          .string()
          .refine((s) => parseListenAddress(s) !== undefined, {
            message: 'must be host:port with a port of 0-65535, e.g. 127.0.0.1:9477 or [::1]:9477',
          })
          .optional(),
      })
      .strict()
      .prefault({}),
    ...driverSectionSchemas,
  })
  .strict();

type Parsed = z.infer<typeof ConfigSchema>;
export type Config = Omit<Parsed, DriverName> &
  DriverSections & {
    state: string;
    mountRoot: string;
    stagingDir: string;
    /** Where the file part came from, for messages; undefined when none was read. */
    source?: string;
  };

export interface ConfigSources {
  /** Explicit file (flag); missing file is an error. Without it, $STOWAGE_CONFIG, then the default path if present. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values in config shape, already nested (highest priority). */
  flags?: Record<string, unknown>;
}

/**
 * file < environment < flags. The environment is every STOWAGE_* variable derived from the schema
 * plus the Rancher stack names (src/config-env.ts); an empty variable counts as unset.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const file = configFileOf(sources.file, env);
  const merged: Record<string, unknown> = file ? readConfigFile(file) : {};
  const fromEnv = readEnvironment(ConfigSchema, env);
  const flags = sources.flags ?? {};
  deepMerge(merged, fromEnv.values);
  deepMerge(merged, flags);

  /** Which source gave the value at `path`, for the error line: flags, then the environment. */
  const setBy = (path: readonly PropertyKey[]): string => {
    if (definedAt(flags, path)) return ' (set by a command-line flag)';
    for (let n = path.length; n > 0; n--) {
      const name = fromEnv.origins.get(path.slice(0, n).join('.'));
      if (name) return ` (set by ${name})`;
    }
    return '';
  };
  const lines = fromEnv.errors.map((e) => `  ${e.path}: ${e.message} (set by ${e.source})`);
  const res = ConfigSchema.safeParse(merged);
  if (!res.success) {
    for (const i of res.error.issues) {
      if (i.code === 'unrecognized_keys') {
        for (const k of i.keys)
          lines.push(`  ${[...i.path, k].join('.')}: unknown key${setBy([...i.path, k])}`);
      } else lines.push(`  ${i.path.join('.') || '(top level)'}: ${i.message}${setBy(i.path)}`);
    }
  }
  if (!res.success || lines.length > 0) {
    const where = file ? ` (file ${file}, environment and flags)` : '';
    throw new StowageError('CONFIG', `invalid configuration${where}:\n${lines.join('\n')}`);
  }
  const c = res.data;
  const config: Config = {
    ...c,
    state: c.state ?? join(c.dataDir, 'state.db'),
    mountRoot: c.mountRoot ?? join(c.dataDir, 'volumes'),
    stagingDir: c.stagingDir ?? join(c.dataDir, 'staging'),
    ...resolveDriverSections(c, c.dataDir),
  };
  if (file) config.source = file;
  return config;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new StowageError('CONFIG', `cannot read config file ${file}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new StowageError(
      'CONFIG',
      `config file ${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
    );
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new StowageError('CONFIG', `config file ${file} must hold a mapping of keys to values`);
  }
  return data as Record<string, unknown>;
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const cur = target[key];
    if (isPlainObject(value) && isPlainObject(cur)) deepMerge(cur, value);
    else target[key] = value;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** True when `source` holds a value at `path` (or at a list or scalar on the way to it). */
function definedAt(source: Record<string, unknown>, path: readonly PropertyKey[]): boolean {
  let cur: unknown = source;
  for (const key of path) {
    if (!isPlainObject(cur)) return cur !== undefined;
    cur = cur[key as string];
  }
  return cur !== undefined;
}
