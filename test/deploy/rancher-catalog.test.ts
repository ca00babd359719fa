import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { type Config, ConfigSchema, loadConfig } from '../../src/config.js';

/**
 * The Rancher 1.6 catalog in deploy/rancher-catalog: what a user relies on when they add it to
 * Rancher, or run one of its stacks with docker-compose. Rancher reads docker-compose.yml with its
 * own schema (unknown service keys are refused) and its own interpolation (no ${VAR:-default}),
 * so both are checked here as well as the facts the stacks must keep: the driver Rancher
 * registers is the socket stowage serves, and every answer reaches stowage under a name it reads.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const CATALOG = join(ROOT, 'deploy', 'rancher-catalog', 'infra-templates');
const STATE_MOUNT = '/var/lib/stowage';

interface Expected {
  accessMode: 'multiHostRW' | 'singleHostRW';
  /** Questions the stack must ask, with the type (and enum options/default) users know from Rancher. */
  questions: Record<string, { type: string; required?: boolean; options?: string[]; default?: string }>;
}
const EXPECTED: Record<string, Expected> = {
  nfs: {
    accessMode: 'multiHostRW',
    questions: {
      NFS_SERVER: { type: 'string', required: true },
      MOUNT_DIR: { type: 'string', required: true },
      MOUNT_OPTS: { type: 'string' },
      NFS_VERS: { type: 'enum', options: ['nfsvers=3', 'nfsvers=4'], default: 'nfsvers=4' },
      ON_REMOVE: { type: 'enum', options: ['purge', 'retain'], default: 'purge' },
      RANCHER_DEBUG: { type: 'boolean' },
    },
  },
  ebs: {
    accessMode: 'singleHostRW',
    questions: {
      AWS_ACCESS_KEY_ID: { type: 'string' },
      AWS_SECRET_ACCESS_KEY: { type: 'password' },
      RANCHER_DEBUG: { type: 'boolean' },
    },
  },
  efs: {
    accessMode: 'multiHostRW',
    questions: {
      AWS_ACCESS_KEY_ID: { type: 'string' },
      AWS_SECRET_ACCESS_KEY: { type: 'password' },
      STOWAGE_EFS_FILE_SYSTEM_ID: { type: 'string' },
      ON_REMOVE: { type: 'enum', options: ['purge', 'retain'] },
      RANCHER_DEBUG: { type: 'boolean' },
    },
  },
};

/** Service keys Rancher 1.6's compose v2 schema allows (rancher-compose-executor config/schema.go). */
const RANCHER_V2_SERVICE_KEYS = new Set(
  (
    'blkio_weight blkio_weight_device build cap_add cap_drop certs cgroup_parent command config ' +
    'container_name cpu_period cpu_shares cpu_quota cpuset default_cert depends_on description ' +
    'device_read_bps device_read_iops devices device_write_bps device_write_iops disks dns dns_opt ' +
    'dns_search domainname entrypoint env_file environment expose extends external_ips ' +
    'external_links extra_hosts health_check hostname image init ipc isolation labels lb_config ' +
    'links load_balancer_config logging mac_address memory mem_limit mem_reservation memswap_limit ' +
    'mem_swappiness metadata network_driver network_mode networks oom_kill_disable oom_score_adj ' +
    'group_add pid ports port_rules privileged read_only restart retain_ip scale scale_policy ' +
    'security_opt shm_size secrets start_on_create stickiness_policy stdin_open stop_signal ' +
    'storage_driver sysctls tmpfs tty type upgrade_strategy ulimits user userdata uts vcpu volumes ' +
    'volume_driver volumes_from working_dir'
  ).split(' '),
);
/** Question types Rancher 1.x's catalog renders. */
const QUESTION_TYPES = new Set([
  'string',
  'int',
  'float',
  'boolean',
  'password',
  'enum',
  'multiline',
  'service',
  'certificate',
  'date',
]);
/** Read by the AWS SDK itself, not by stowage's config. */
const AWS_SDK_ENV = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION'];
/** The Rancher storage-stack names stowage reads besides STOWAGE_*. */
const RANCHER_ENV = ['NFS_SERVER', 'MOUNT_DIR', 'MOUNT_OPTS', 'NFS_VERS', 'ON_REMOVE', 'RANCHER_DEBUG'];

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, walked by key
type Doc = Record<string, any>;
interface Question {
  variable: string;
  type: string;
  required?: boolean;
  default?: unknown;
  options?: unknown[];
  label?: string;
  description?: string;
}
interface Stack {
  driver: string;
  dir: string;
  config: Doc;
  compose: Doc;
  composeText: string;
  rancher: Doc;
  rancherText: string;
  serviceName: string;
  service: Doc;
  env: Record<string, string>;
  questions: Question[];
}

function yamlFile(file: string): { doc: Doc; text: string } {
  const text = readFileSync(file, 'utf8');
  const parsed = parseDocument(text);
  expect(
    parsed.errors.map((e) => e.message),
    file,
  ).toEqual([]);
  const doc = parsed.toJS() as unknown;
  expect(doc, file).toBeTypeOf('object');
  return { doc: doc as Doc, text };
}

function loadStack(driver: string): Stack {
  const dir = join(CATALOG, `stowage-${driver}`);
  const config = yamlFile(join(dir, 'config.yml')).doc;
  const { doc: compose, text: composeText } = yamlFile(join(dir, '0', 'docker-compose.yml'));
  const { doc: rancher, text: rancherText } = yamlFile(join(dir, '0', 'rancher-compose.yml'));
  const names = Object.keys(compose.services ?? {});
  expect(names, `${driver}: services`).toHaveLength(1);
  const serviceName = names[0]!;
  const service = compose.services[serviceName] as Doc;
  const env = (service.environment ?? {}) as Record<string, unknown>;
  expect(Array.isArray(env), `${driver}: environment must be a mapping`).toBe(false);
  return {
    driver,
    dir,
    config,
    compose,
    composeText,
    rancher,
    rancherText,
    serviceName,
    service,
    env: Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])),
    questions: (rancher['.catalog']?.questions ?? []) as Question[],
  };
}

interface VarRef {
  name: string;
  raw: string;
  /** ${VAR:-x}, ${VAR-x} */
  hasDefault: boolean;
  /** The form Rancher 1.6's interpolation accepts: $VAR or ${VAR}. */
  plain: boolean;
}

/** The variables compose interpolates in one string ($$ is a literal $). */
function varsIn(value: string): VarRef[] {
  const out: VarRef[] = [];
  const re = /\$(\$|\{([^}]*)\}|[A-Za-z_][A-Za-z0-9_]*)/g;
  for (const m of value.matchAll(re)) {
    if (m[1] === '$') continue;
    if (m[2] === undefined) {
      out.push({ name: m[1]!, raw: m[0], hasDefault: false, plain: true });
      continue;
    }
    const inner = /^([A-Za-z_][A-Za-z0-9_]*)(.*)$/s.exec(m[2]);
    const name = inner?.[1] ?? m[2];
    const rest = inner?.[2] ?? '';
    out.push({ name, raw: m[0], hasDefault: /^:?-/.test(rest), plain: inner !== null && rest === '' });
  }
  return out;
}

/** Every variable in every string value of the compose file (keys are not interpolated). */
function composeVars(node: unknown): VarRef[] {
  if (typeof node === 'string') return varsIn(node);
  if (Array.isArray(node)) return node.flatMap(composeVars);
  if (node && typeof node === 'object') return Object.values(node).flatMap(composeVars);
  return [];
}

function resolve(value: string, answers: Record<string, string>): string {
  return value.replace(/\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, all, b, p) =>
    all === '$' ? '$' : (answers[b ?? p] ?? ''),
  );
}

/** STOWAGE_<PATH_UPPER_SNAKE> for every key of the config schema (nested objects walked). */
function schemaEnvNames(): string[] {
  const names: string[] = [];
  // biome-ignore lint/suspicious/noExplicitAny: zod's internal definition tree
  const walk = (schema: any, path: string[]) => {
    let s = schema;
    while (['optional', 'default', 'prefault', 'nullable'].includes(s?.def?.type)) s = s.def.innerType;
    if (s?.def?.type === 'object' && path.length < 3) {
      for (const [key, child] of Object.entries(s.shape as Record<string, unknown>))
        walk(child, [...path, key]);
      return;
    }
    const snake = path.map((p) =>
      p
        .replace(/GiB/g, 'Gib')
        .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
        .toUpperCase(),
    );
    names.push(`STOWAGE_${snake.join('_')}`);
  };
  walk(ConfigSchema, []);
  return names;
}

/**
 * The environment names stowage's config accepts: src/config-env.ts's lists once it exists (they
 * are what the daemon reads), else the STOWAGE_ names of the schema and the Rancher names.
 */
async function acceptedEnv(): Promise<{ names: Set<string>; source: string }> {
  const file = join(ROOT, 'src', 'config-env.ts');
  if (existsSync(file)) {
    const mod = (await import(pathToFileURL(file).href)) as {
      envKeys?: (schema: unknown) => Iterable<string | { name: string }>;
      RANCHER_VARIABLES?: readonly string[];
    };
    expect(mod.envKeys, 'src/config-env.ts must export envKeys()').toBeTypeOf('function');
    const list = [...mod.envKeys!(ConfigSchema)].map((k) => (typeof k === 'string' ? k : k.name));
    expect(list.length, 'envKeys() returned no names').toBeGreaterThan(0);
    return {
      names: new Set([...list, ...(mod.RANCHER_VARIABLES ?? RANCHER_ENV), ...AWS_SDK_ENV]),
      source: 'src/config-env.ts',
    };
  }
  return {
    names: new Set([...schemaEnvNames(), ...RANCHER_ENV, ...AWS_SDK_ENV]),
    source: 'the config schema and the Rancher names',
  };
}

/** Where each stack's answers must land in the config the daemon runs with. */
const APPLIED: Record<string, (c: Config, a: Record<string, string>) => void> = {
  nfs: (c, a) => {
    expect(c.nfs.server).toBe(a.NFS_SERVER);
    expect(c.nfs.share).toBe(a.MOUNT_DIR);
    expect(c.nfs.mountOptions).toEqual(a.MOUNT_OPTS!.split(',').filter(Boolean));
    expect(c.nfs.nfsVersion).toBe(a.NFS_VERS!.replace(/^nfsvers=/, ''));
    // Rancher's purge deleted the volume's directory: stowage's delete.
    expect(c.nfs.onRemove).toBe(a.ON_REMOVE === 'purge' ? 'delete' : a.ON_REMOVE);
  },
  ebs: () => {},
  efs: (c, a) => {
    expect(c.efs.fileSystemId).toBe(a.STOWAGE_EFS_FILE_SYSTEM_ID);
    expect(c.efs.onRemove).toBe(a.ON_REMOVE === 'purge' ? 'delete' : a.ON_REMOVE);
  },
};

/** An answer for every question: its default, or a plausible value a user would type. */
function sampleAnswers(stack: Stack): Record<string, string> {
  const samples: Record<string, string> = {
    NFS_SERVER: 'nas1.example.com',
    MOUNT_DIR: '/exports/docker',
    MOUNT_OPTS: 'proto=tcp,timeo=600',
    STOWAGE_EFS_FILE_SYSTEM_ID: 'fs-0123456789abcdef0',
    AWS_ACCESS_KEY_ID: '',
    AWS_SECRET_ACCESS_KEY: '',
    STOWAGE_STATE: '',
  };
  const answers: Record<string, string> = {};
  for (const q of stack.questions) {
    answers[q.variable] =
      q.default !== undefined && q.default !== null
        ? String(q.default)
        : q.type === 'enum'
          ? String(q.options?.[0])
          : q.type === 'boolean'
            ? 'false'
            : (samples[q.variable] ?? 'x');
  }
  return answers;
}

const entries = existsSync(CATALOG) ? readdirSync(CATALOG).sort() : [];

describe('deploy/rancher-catalog layout', () => {
  it('has one infra-template per driver, each with config.yml, an icon and version 0', () => {
    expect(entries).toEqual(['stowage-ebs', 'stowage-efs', 'stowage-nfs']);
    for (const entry of entries) {
      const files = readdirSync(join(CATALOG, entry)).sort();
      expect(files, entry).toEqual(['0', 'catalogIcon-stowage.svg', 'config.yml']);
      expect(readdirSync(join(CATALOG, entry, '0')).sort(), entry).toEqual([
        'README.md',
        'docker-compose.yml',
        'rancher-compose.yml',
      ]);
      const svg = readFileSync(join(CATALOG, entry, 'catalogIcon-stowage.svg'), 'utf8');
      expect(svg.trimStart().startsWith('<svg'), `${entry}: icon`).toBe(true);
      expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
      expect(svg).toMatch(/viewBox="[\d. ]+"/);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(svg.length, `${entry}: a small icon`).toBeLessThan(4096);
    }
  });
});

describe.each(Object.keys(EXPECTED))('rancher catalog: stowage-%s', (driver) => {
  const expected = EXPECTED[driver]!;
  let stack: Stack;
  beforeAll(() => {
    stack = loadStack(driver);
  });

  it('config.yml and .catalog describe the same template version', () => {
    const { config, rancher } = stack;
    for (const key of ['name', 'description', 'version', 'category']) {
      expect(typeof config[key], `config.yml ${key}`).toBe('string');
      expect(config[key].trim().length).toBeGreaterThan(0);
    }
    expect(config.category).toBe('Storage');
    const catalog = rancher['.catalog'];
    expect(catalog?.name).toBeTypeOf('string');
    expect(catalog?.description).toBeTypeOf('string');
    expect(String(catalog?.version)).toBe(config.version);
  });

  it('uses only what Rancher 1.6 accepts: compose v2, its service keys, no templates', () => {
    const { compose, service, composeText, rancherText } = stack;
    expect(compose.version).toBe('2');
    const foreign = Object.keys(service).filter((k) => !RANCHER_V2_SERVICE_KEYS.has(k));
    expect(foreign, 'service keys Rancher 1.6 refuses').toEqual([]);
    // Rancher runs every compose file through Go's text/template first.
    expect(composeText).not.toContain('{{');
    expect(rancherText).not.toContain('{{');
  });

  it('every compose variable is a question or has a default, in a form Rancher 1.6 interpolates', () => {
    const refs = composeVars(stack.compose);
    expect(refs.length).toBeGreaterThan(0);
    const asked = new Set(stack.questions.map((q) => q.variable));
    for (const ref of refs) {
      expect(asked.has(ref.name) || ref.hasDefault, `${ref.raw} is neither a question nor defaulted`).toBe(
        true,
      );
      // Rancher 1.6 fails the whole stack on ${VAR:-default} ("Invalid interpolation format").
      expect(ref.plain, `${ref.raw}: Rancher 1.6 accepts only $VAR and \${VAR}`).toBe(true);
    }
  });

  it('every question is used, has a type Rancher renders, and enums offer their default', () => {
    const used = new Set(composeVars(stack.compose).map((r) => r.name));
    const seen = new Set<string>();
    for (const q of stack.questions) {
      expect(seen.has(q.variable), `${q.variable} asked twice`).toBe(false);
      seen.add(q.variable);
      expect(used.has(q.variable), `${q.variable} is asked but never used`).toBe(true);
      expect(QUESTION_TYPES.has(q.type), `${q.variable}: type ${q.type}`).toBe(true);
      expect(q.label, `${q.variable}: label`).toBeTypeOf('string');
      expect(q.description, `${q.variable}: description`).toBeTypeOf('string');
      if (q.type === 'enum') {
        expect(q.options?.length, `${q.variable}: options`).toBeGreaterThan(0);
        if (q.default !== undefined) expect(q.options).toContain(q.default);
      }
      if (q.type === 'boolean' && q.default !== undefined)
        expect(['true', 'false']).toContain(String(q.default));
    }
  });

  it("asks what Rancher's own stack asked, with the same types and choices", () => {
    const byName = new Map(stack.questions.map((q) => [q.variable, q]));
    for (const [variable, want] of Object.entries(expected.questions)) {
      const q = byName.get(variable);
      expect(q, `question ${variable}`).toBeDefined();
      expect(q!.type, variable).toBe(want.type);
      if (want.required !== undefined)
        expect(q!.required === true, `${variable} required`).toBe(want.required);
      if (want.options) expect([...(q!.options ?? [])].map(String).sort(), variable).toEqual(want.options);
      if (want.default !== undefined) expect(String(q!.default), `${variable} default`).toBe(want.default);
    }
    // The image is an answer with a default: compose interpolation without Rancher's defaults.
    expect(String(byName.get('STOWAGE_IMAGE')?.default)).toMatch(/^stowage:\d+\.\d+\.\d+$/);
    expect(varsIn(stack.service.image)).toEqual([
      { name: 'STOWAGE_IMAGE', raw: stack.service.image, hasDefault: false, plain: true },
    ]);
  });

  it('registers rancher-<driver>: the socket stowage serves (prefix + driver)', () => {
    const { rancher, serviceName, env } = stack;
    const block = rancher[serviceName]?.storage_driver;
    expect(block, `rancher-compose.yml ${serviceName}.storage_driver`).toBeDefined();
    expect(block.name).toBe(`rancher-${driver}`);
    expect(`${env.STOWAGE_SOCKET_PREFIX}${env.STOWAGE_DRIVERS}`).toBe(block.name);
    expect(block.scope).toBe('environment');
    expect(block.volume_access_mode).toBe(expected.accessMode);
    // No other socket directory: dockerd looks in /run/docker/plugins.
    expect(env.STOWAGE_SOCKET_DIR ?? '/run/docker/plugins').toBe('/run/docker/plugins');
  });

  it('runs once per host, privileged, in the host network and pid namespaces', () => {
    const { service } = stack;
    expect(service.labels?.['io.rancher.scheduler.global']).toBe('true');
    expect(service.labels?.['io.rancher.container.create_agent']).toBe('true');
    expect(service.labels?.['io.rancher.container.agent.role']).toBe('environment');
    expect(service.privileged).toBe(true);
    expect(service.network_mode).toBe('host');
    expect(service.pid).toBe('host');
    expect(service.restart).toBe('always');
  });

  it('mounts the plugin directory, /dev and the state directory rshared, and keeps state inside it', () => {
    const { service, env } = stack;
    const volumes = (service.volumes ?? []) as string[];
    expect(volumes).toContain(`${STATE_MOUNT}:${STATE_MOUNT}:rshared`);
    expect(volumes).toContain('/run/docker/plugins:/run/docker/plugins');
    expect(volumes).toContain('/dev:/dev');
    // Volumes are mounted under the data dir: outside the rshared mount the host never sees them.
    const dataDir = env.STOWAGE_DATA_DIR ?? STATE_MOUNT;
    expect(posix.relative(STATE_MOUNT, dataDir).startsWith('..'), dataDir).toBe(false);
    expect(env.STOWAGE_MOUNT_ROOT, 'mountRoot must stay under the data dir').toBeUndefined();
  });

  it("passes only environment names stowage's config (or the AWS SDK) reads", async () => {
    const { names, source } = await acceptedEnv();
    const unknown = Object.keys(stack.env).filter((k) => !names.has(k));
    expect(unknown, `not accepted by ${source}`).toEqual([]);
  });

  describe('the answers reach a config the daemon accepts', () => {
    let dir: string;
    let emptyFile: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'stowage-rancher-'));
      emptyFile = join(dir, 'config.yaml');
      await writeFile(emptyFile, '');
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('with the defaults and with every choice of every enum and boolean', () => {
      const base = sampleAnswers(stack);
      const variants: Record<string, string>[] = [base];
      for (const q of stack.questions) {
        const choices =
          q.type === 'enum' ? (q.options ?? []).map(String) : q.type === 'boolean' ? ['true', 'false'] : [];
        for (const choice of choices) variants.push({ ...base, [q.variable]: choice });
      }
      for (const answers of variants) {
        const env = Object.fromEntries(Object.entries(stack.env).map(([k, v]) => [k, resolve(v, answers)]));
        const config = loadConfig({ file: emptyFile, env });
        expect(config.drivers).toEqual([driver]);
        expect(`${config.socketPrefix}${config.drivers[0]}`).toBe(`rancher-${driver}`);
        expect(config.socketDir).toBe('/run/docker/plugins');
        expect(posix.relative(STATE_MOUNT, config.mountRoot).startsWith('..'), config.mountRoot).toBe(false);
        // An empty Shared State Store answer means a SQLite file inside the bind-mounted state dir.
        expect(posix.relative(STATE_MOUNT, config.state).startsWith('..'), config.state).toBe(false);
        expect(config.log.level).toBe(answers.RANCHER_DEBUG === 'true' ? 'debug' : 'info');
        APPLIED[driver]!(config, answers);
      }
    });
  });
});

describe('rancher catalog: stacks side by side on one host', () => {
  it('keep their state apart: each stack can be removed or upgraded on its own', () => {
    const dirs = Object.keys(EXPECTED).map((d) => loadStack(d).env.STOWAGE_DATA_DIR ?? STATE_MOUNT);
    expect(new Set(dirs).size).toBe(dirs.length);
  });
});
