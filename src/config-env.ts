import type { z } from 'zod';
import { isNfsVersionOption } from './base/mount-options.js';

/**
 * Configuration from environment variables, for the container image, the Docker managed plugin
 * and the Rancher catalog stacks, where the environment is the only way in.
 *
 * Every leaf of the config schema has a variable derived from its path (`nfs.mountOptions` ->
 * STOWAGE_NFS_MOUNT_OPTIONS), so a new key gets one without anyone remembering to list it. The
 * names of rancher/storage's NFS/EBS/EFS stacks are read too, so a stack's answers work unchanged;
 * a STOWAGE_* variable wins over a Rancher name for the same key.
 *
 * The schema is passed in rather than imported: config.ts imports this file, and an import cycle
 * would make the order of module evaluation matter.
 */

export const ENV_PREFIX = 'STOWAGE_';

/** How a variable's text becomes a value: the schema leaf's type decides. */
export type EnvKind = 'string' | 'number' | 'boolean' | 'list';

export interface EnvKey {
  /** STOWAGE_NFS_MOUNT_OPTIONS */
  name: string;
  /** ['nfs', 'mountOptions'] */
  path: string[];
  kind: EnvKind;
}

/** A value (or a refusal) that one variable gave one config key. */
interface Setting {
  path: string[];
  source: string;
  value?: unknown;
  error?: string;
}

export interface EnvLayer {
  /** Config-shaped values, to merge over the file. */
  values: Record<string, unknown>;
  /** Dotted key path -> the variable that set it, so an error can name the variable. */
  origins: Map<string, string>;
  /** Values no schema type could be read from (a number that is not one, ...). */
  errors: { path: string; message: string; source: string }[];
}

/** `['ebs', 'defaultSizeGiB']` -> STOWAGE_EBS_DEFAULT_SIZE_GIB. */
export function envName(path: readonly string[]): string {
  return ENV_PREFIX + path.map(upperSnake).join('_');
}

function upperSnake(key: string): string {
  // "GiB" is one word: DEFAULT_SIZE_GIB, not DEFAULT_SIZE_GI_B.
  return key
    .replace(/GiB/g, 'Gib')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toUpperCase();
}

/** Every leaf of the schema with its variable, in schema order (docs and the plugin manifest list these). */
export function envKeys(schema: z.ZodType): EnvKey[] {
  const keys: EnvKey[] = [];
  const walk = (s: z.ZodType, path: string[]): void => {
    const leaf = unwrap(s);
    const def = defOf(leaf);
    if (def.type === 'object') {
      for (const [k, child] of Object.entries(def.shape ?? {})) walk(child, [...path, k]);
      return;
    }
    const kind = KINDS[def.type];
    if (!kind) throw new Error(`config key ${path.join('.')}: no environment form for a ${def.type}`);
    keys.push({ name: envName(path), path, kind });
  };
  walk(schema, []);
  return keys;
}

const KINDS: Record<string, EnvKind> = {
  string: 'string',
  enum: 'string',
  literal: 'string',
  number: 'number',
  boolean: 'boolean',
  array: 'list',
};

/** The zod internals this file reads; zod 4 keeps them on `_zod.def`. */
interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  entries?: Record<string, string>;
}

function defOf(s: z.ZodType): Def {
  return s._zod.def as unknown as Def;
}

/** Strips default/optional/prefault (and friends) down to the type that reads the value. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    const def = defOf(s);
    const inner = def.type === 'pipe' ? def.in : def.innerType;
    if (!inner) return s;
    s = inner;
  }
}

/** The values an enum leaf accepts, for mapping Rancher's words onto the schema's. */
function enumValues(schema: z.ZodType, path: readonly string[]): string[] {
  let s: z.ZodType | undefined = unwrap(schema);
  for (const k of path) {
    const child: z.ZodType | undefined = s && defOf(s).shape?.[k];
    s = child ? unwrap(child) : undefined;
  }
  return s ? Object.values(defOf(s).entries ?? {}) : [];
}

/** Reads the STOWAGE_* and Rancher variables of `env`; an empty variable counts as unset. */
export function readEnvironment(schema: z.ZodType, env: NodeJS.ProcessEnv): EnvLayer {
  const settings = new Map<string, Setting>();
  const put = (s: Setting) => settings.set(s.path.join('.'), s);
  const get = (name: string) => (env[name] === '' ? undefined : env[name]);

  // Rancher first, so that a STOWAGE_* variable for the same key replaces it.
  for (const s of rancherSettings(schema, get)) put(s);
  for (const key of envKeys(schema)) {
    const raw = get(key.name);
    if (raw === undefined) continue;
    put({ path: key.path, source: key.name, ...convert(key.kind, raw) });
  }

  const layer: EnvLayer = { values: {}, origins: new Map(), errors: [] };
  for (const [dotted, s] of settings) {
    layer.origins.set(dotted, s.source);
    if (s.error !== undefined) layer.errors.push({ path: dotted, message: s.error, source: s.source });
    else setPath(layer.values, s.path, s.value);
  }
  return layer;
}

function convert(kind: EnvKind, raw: string): { value: unknown } | { error: string } {
  switch (kind) {
    case 'string':
      return { value: raw };
    case 'list':
      return { value: splitList(raw) };
    case 'number': {
      const n = raw.trim() === '' ? Number.NaN : Number(raw);
      return Number.isFinite(n) ? { value: n } : { error: `${JSON.stringify(raw)} is not a number` };
    }
    case 'boolean': {
      const b = parseBoolean(raw);
      return b === undefined
        ? { error: `${JSON.stringify(raw)} is not a boolean (true/false, 1/0, yes/no)` }
        : { value: b };
    }
  }
}

export function parseBoolean(raw: string): boolean | undefined {
  const v = raw.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  return undefined;
}

/** The variables of rancher/storage's stacks this reads (for docs). */
export const RANCHER_VARIABLES = [
  'NFS_SERVER',
  'MOUNT_DIR',
  'MOUNT_OPTS',
  'NFS_VERS',
  'ON_REMOVE',
  'RANCHER_DEBUG',
];

/** `nfsvers=4.1`, `vers=3`, `4` -> the schema's form; 4.0 is the NFS driver's 4, as in -o vers=4.0. */
function nfsVersion(text: string): string {
  const v = text.trim().replace(/^(nfs)?vers=/i, '');
  return v === '4.0' ? '4' : v;
}

/** Rancher's onRemove words: `purge` deleted the directory. */
const RANCHER_ON_REMOVE: Record<string, string> = { purge: 'delete', retain: 'retain', delete: 'delete' };

function rancherSettings(schema: z.ZodType, get: (name: string) => string | undefined): Setting[] {
  const out: Setting[] = [];
  const server = get('NFS_SERVER');
  if (server !== undefined) out.push({ path: ['nfs', 'server'], source: 'NFS_SERVER', value: server });
  const dir = get('MOUNT_DIR');
  if (dir !== undefined) out.push({ path: ['nfs', 'share'], source: 'MOUNT_DIR', value: dir });

  const opts = get('MOUNT_OPTS');
  if (opts !== undefined) {
    // The stacks put the version among the options; stowage keeps it in its own key (the NFS
    // driver drops vers= from the configured options), so it is moved there rather than lost.
    const list = splitList(opts);
    const isVersion = (o: string) => isNfsVersionOption(o.trim());
    out.push({
      path: ['nfs', 'mountOptions'],
      source: 'MOUNT_OPTS',
      value: list.filter((o) => !isVersion(o)),
    });
    const version = list.find(isVersion);
    // Set even when not one of 3/4/4.1/4.2, so that the schema refuses it naming MOUNT_OPTS.
    if (version) out.push({ path: ['nfs', 'nfsVersion'], source: 'MOUNT_OPTS', value: nfsVersion(version) });
  }
  const vers = get('NFS_VERS');
  if (vers !== undefined)
    out.push({ path: ['nfs', 'nfsVersion'], source: 'NFS_VERS', value: nfsVersion(vers) });

  const onRemove = get('ON_REMOVE');
  if (onRemove !== undefined) {
    const word = onRemove.trim().toLowerCase();
    const policy = RANCHER_ON_REMOVE[word] ?? word;
    // One variable for every driver section with a remove policy: each takes the policy only if
    // its schema accepts it (efs has no `archive`; it keeps its own default then, which is retain).
    const top = Object.keys(defOf(unwrap(schema)).shape ?? {});
    const sections = top.filter((name) => enumValues(schema, [name, 'onRemove']).length > 0);
    let taken = false;
    for (const section of sections) {
      const path = [section, 'onRemove'];
      if (!enumValues(schema, path).includes(policy)) continue;
      out.push({ path, source: 'ON_REMOVE', value: policy });
      taken = true;
    }
    if (!taken) {
      out.push({
        // Reported against the first section with a policy (nfs: Rancher's variable is its NFS stack's).
        path: [...sections.slice(0, 1), 'onRemove'],
        source: 'ON_REMOVE',
        error: `${JSON.stringify(onRemove)} is not one of purge, retain, delete, archive`,
      });
    }
  }

  const debug = get('RANCHER_DEBUG');
  if (debug !== undefined) {
    const on = parseBoolean(debug);
    if (on === undefined) {
      out.push({
        path: ['log', 'level'],
        source: 'RANCHER_DEBUG',
        error: `${JSON.stringify(debug)} is not true or false`,
      });
    } else if (on) out.push({ path: ['log', 'level'], source: 'RANCHER_DEBUG', value: 'debug' });
  }
  return out;
}

/** `a, b,,c ` -> ['a', 'b', 'c']: blanks and spaces around entries are dropped. */
export function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = target;
  for (const key of path.slice(0, -1)) {
    const next = cur[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}
