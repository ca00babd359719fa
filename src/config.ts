import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseDuration } from './base/duration.js';
import { StowageError } from './base/errors.js';
import { parseSize } from './base/size.js';
import { readEnvironment } from './config-env.js';

export const DEFAULT_CONFIG_FILE = '/etc/stowage/config.yaml';

/** What AWS recommends for EFS over NFSv4.1. */
export const EFS_MOUNT_DEFAULTS = [
  'nfsvers=4.1',
  'rsize=1048576',
  'wsize=1048576',
  'hard',
  'timeo=600',
  'retrans=2',
  'noresvport',
];

const absPath = z.string().refine(isAbsolute, { message: 'must be an absolute path' });
const ms = z
  .number()
  .int()
  .positive()
  .max(24 * 3600 * 1000);

/**
 * Sizes and durations stay text in the config (drivers parse them, and volumes override them),
 * but are checked here with the same parsers, so a typo stops the daemon at start with the key
 * named instead of failing the first volume that uses it.
 */
const size = z.string().superRefine(parsesWith(parseSize));
const duration = z.string().superRefine(parsesWith(parseDuration));

function parsesWith(parse: (text: string) => number) {
  return (text: string, ctx: z.RefinementCtx) => {
    try {
      parse(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  };
}

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
    drivers: z.array(z.string().min(1)).min(1).default(['local']),
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
    nfs: z
      .object({
        /** Default server for volumes that give none (`-o server=`). */
        server: z.string().min(1).optional(),
        /** Default base export under which each volume gets its subdirectory. */
        share: z.string().startsWith('/', { message: 'must be an absolute export path' }).optional(),
        /** Mount options every NFS mount gets; a volume's own mountOptions are merged over them. */
        mountOptions: z.array(z.string().min(1)).default([]),
        nfsVersion: z.enum(['3', '4', '4.1', '4.2']).default('4.1'),
        onRemove: z.enum(['retain', 'delete', 'archive']).default('retain'),
        mode: z
          .string()
          .regex(/^0?[0-7]{3,4}$/, { message: 'must be an octal mode such as 0755' })
          .default('0755'),
        mountTimeout: duration.default('30s'),
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
    ebs: z
      .object({
        /** EC2 API endpoint; default the SDK's (which honours AWS_ENDPOINT_URL_EC2). */
        endpoint: z.url().optional(),
        defaultSizeGiB: z.number().int().min(1).max(65536).default(10),
        defaultType: z.enum(['gp3', 'gp2', 'io1', 'io2', 'st1', 'sc1', 'standard']).default('gp3'),
        defaultFsType: z.enum(['ext4', 'xfs']).default('ext4'),
        createTimeout: duration.default('5m'),
        attachTimeout: duration.default('2m'),
        /** How long a size change (ModifyVolume) may take to reach `optimizing`. */
        modifyTimeout: duration.default('2m'),
        /** Where attached devices appear; only tests and unusual hosts change these. */
        devDir: absPath.default('/dev'),
        byIdDir: absPath.default('/dev/disk/by-id'),
        sysBlockDir: absPath.default('/sys/block'),
      })
      .strict()
      .prefault({}),
    efs: z
      .object({
        /** EFS API endpoint; default the SDK's (which honours AWS_ENDPOINT_URL_EFS). */
        endpoint: z.url().optional(),
        /** Default file system for volumes that name none. */
        fileSystemId: z
          .string()
          .regex(/^fs-[0-9a-f]{8,17}$/, { message: 'must be a file system id' })
          .optional(),
        mountOptions: z.array(z.string().min(1)).default(EFS_MOUNT_DEFAULTS),
        onRemove: z.enum(['retain', 'delete']).default('retain'),
        mountTimeout: duration.default('30s'),
        createTimeout: duration.default('10m'),
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
    local: z
      .object({
        imageDir: absPath.optional(),
        defaultSize: size.default('1G'),
        maxSize: size.default('1T'),
        defaultFsType: z.enum(['ext4', 'xfs']).default('ext4'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

type Parsed = z.infer<typeof ConfigSchema>;
export type Config = Parsed & {
  state: string;
  mountRoot: string;
  stagingDir: string;
  local: Parsed['local'] & { imageDir: string };
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
  const file =
    sources.file ??
    (env.STOWAGE_CONFIG || undefined) ??
    (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
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
    local: { ...c.local, imageDir: c.local.imageDir ?? join(c.dataDir, 'local') },
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
