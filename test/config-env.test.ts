import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isStowageError } from '../src/base/errors.js';
import { ConfigSchema, loadConfig } from '../src/config.js';
import { envKeys, envName, readEnvironment } from '../src/config-env.js';

/**
 * Configuration from the environment: the STOWAGE_* names derived from the schema, the Rancher
 * storage-stack names, their precedence, and errors that name the variable that set a bad value.
 * Every load passes an explicit (empty) file and its own env, so nothing of the machine leaks in.
 */

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-config-env-'));
  file = join(dir, 'config.yaml');
  await writeFile(file, '');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const load = (env: NodeJS.ProcessEnv, flags?: Record<string, unknown>) =>
  loadConfig({ file, env, ...(flags ? { flags } : {}) });

/** The CONFIG message loadConfig throws for this environment. */
function errorFor(env: NodeJS.ProcessEnv): string {
  try {
    load(env);
  } catch (err) {
    expect(isStowageError(err, 'CONFIG')).toBe(true);
    return (err as Error).message;
  }
  throw new Error('loadConfig did not throw');
}

describe('names derived from the schema', () => {
  it('path in UPPER_SNAKE after STOWAGE_, with GiB kept one word', () => {
    expect(envName(['nfs', 'mountOptions'])).toBe('STOWAGE_NFS_MOUNT_OPTIONS');
    expect(envName(['timeouts', 'commandMs'])).toBe('STOWAGE_TIMEOUTS_COMMAND_MS');
    expect(envName(['hostId'])).toBe('STOWAGE_HOST_ID');
    expect(envName(['log', 'level'])).toBe('STOWAGE_LOG_LEVEL');
    expect(envName(['etcd', 'password'])).toBe('STOWAGE_ETCD_PASSWORD');
    expect(envName(['ebs', 'defaultSizeGiB'])).toBe('STOWAGE_EBS_DEFAULT_SIZE_GIB');
  });

  it('every name that existed before keeps its key', () => {
    const byName = new Map(envKeys(ConfigSchema).map((k) => [k.name, k.path.join('.')]));
    expect(Object.fromEntries([...byName].filter(([n]) => BEFORE[n] !== undefined))).toEqual(BEFORE);
  });

  it('covers every leaf, each name once, and none is STOWAGE_CONFIG (the file)', () => {
    const keys = envKeys(ConfigSchema);
    const names = keys.map((k) => k.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).not.toContain('STOWAGE_CONFIG');
    expect(keys.find((k) => k.name === 'STOWAGE_AWS_MAX_ATTEMPTS')?.kind).toBe('number');
    expect(keys.find((k) => k.name === 'STOWAGE_HOSTS_TAKE_OVER_GONE')?.kind).toBe('boolean');
    expect(keys.find((k) => k.name === 'STOWAGE_EFS_MOUNT_OPTIONS')?.kind).toBe('list');
    expect(keys.find((k) => k.name === 'STOWAGE_FLEXVOLUME_CALL_TIMEOUT_MS')?.path).toEqual([
      'flexvolume',
      'callTimeoutMs',
    ]);
  });

  it('reads values by the leaf type: lists, numbers, booleans, strings', () => {
    const c = load({
      STOWAGE_NFS_MOUNT_OPTIONS: 'hard, timeo=600,,',
      STOWAGE_TIMEOUTS_COMMAND_MS: '1500',
      STOWAGE_EBS_DEFAULT_SIZE_GIB: '20',
      STOWAGE_HOSTS_TAKE_OVER_GONE: 'yes',
      STOWAGE_EBS_DEFAULT_TYPE: 'io2',
      STOWAGE_ETCD_PASSWORD: 'p w',
    });
    expect(c.nfs.mountOptions).toEqual(['hard', 'timeo=600']);
    expect(c.timeouts.commandMs).toBe(1500);
    expect(c.ebs.defaultSizeGiB).toBe(20);
    expect(c.hosts.takeOverGone).toBe(true);
    expect(c.ebs.defaultType).toBe('io2');
    expect(c.etcd.password).toBe('p w');
    for (const [text, value] of [
      ['true', true],
      ['1', true],
      ['NO', false],
      ['0', false],
      ['false', false],
    ] as const) {
      expect(load({ STOWAGE_HOSTS_TAKE_OVER_GONE: text }).hosts.takeOverGone).toBe(value);
    }
  });

  it('an empty variable is unset', () => {
    const c = load({
      STOWAGE_TIMEOUTS_COMMAND_MS: '',
      STOWAGE_DRIVERS: '',
      NFS_SERVER: '',
      STOWAGE_CONFIG: '',
    });
    expect(c.timeouts.commandMs).toBe(30_000);
    expect(c.drivers).toEqual(['local']);
    expect(c.nfs.server).toBeUndefined();
  });
});

/** The STOWAGE_* names and keys of the hand-written table this replaced. */
const BEFORE: Record<string, string> = {
  STOWAGE_HOST_ID: 'hostId',
  STOWAGE_DATA_DIR: 'dataDir',
  STOWAGE_STATE: 'state',
  STOWAGE_ETCD_PASSWORD: 'etcd.password',
  STOWAGE_MOUNT_ROOT: 'mountRoot',
  STOWAGE_SOCKET_DIR: 'socketDir',
  STOWAGE_SOCKET_PREFIX: 'socketPrefix',
  STOWAGE_DRIVERS: 'drivers',
  STOWAGE_LOG_LEVEL: 'log.level',
  STOWAGE_LOG_FILE: 'log.file',
  STOWAGE_NFS_SERVER: 'nfs.server',
  STOWAGE_NFS_SHARE: 'nfs.share',
};

describe('Rancher storage-stack names', () => {
  it('NFS_SERVER and MOUNT_DIR are the NFS server and share', () => {
    const c = load({ NFS_SERVER: 'nas1', MOUNT_DIR: '/exports/rancher' });
    expect(c.nfs).toMatchObject({ server: 'nas1', share: '/exports/rancher' });
  });

  it('MOUNT_OPTS is the option list, with its vers=/nfsvers= moved to nfsVersion', () => {
    expect(load({ MOUNT_OPTS: 'hard,nfsvers=3, timeo=600' }).nfs).toMatchObject({
      mountOptions: ['hard', 'timeo=600'],
      nfsVersion: '3',
    });
    expect(load({ MOUNT_OPTS: 'vers=4.2' }).nfs).toMatchObject({ mountOptions: [], nfsVersion: '4.2' });
    expect(load({ MOUNT_OPTS: 'soft' }).nfs).toMatchObject({ mountOptions: ['soft'], nfsVersion: '4.1' });
    expect(errorFor({ MOUNT_OPTS: 'hard,vers=5' })).toMatch(/nfs\.nfsVersion: .*\(set by MOUNT_OPTS\)/);
  });

  it('NFS_VERS takes nfsvers=N, vers=N and a bare N; it wins over a version in MOUNT_OPTS', () => {
    for (const [text, version] of [
      ['nfsvers=4', '4'],
      ['4', '4'],
      ['4.1', '4.1'],
      ['nfsvers=3', '3'],
      ['vers=4.2', '4.2'],
    ]) {
      expect(load({ NFS_VERS: text }).nfs.nfsVersion).toBe(version);
    }
    expect(load({ NFS_VERS: '3', MOUNT_OPTS: 'vers=4.2' }).nfs.nfsVersion).toBe('3');
  });

  it('ON_REMOVE sets nfs and efs: purge is delete; archive is taken by nfs only', () => {
    expect(load({ ON_REMOVE: 'purge' })).toMatchObject({
      nfs: { onRemove: 'delete' },
      efs: { onRemove: 'delete' },
    });
    expect(load({ ON_REMOVE: 'retain' })).toMatchObject({
      nfs: { onRemove: 'retain' },
      efs: { onRemove: 'retain' },
    });
    expect(load({ ON_REMOVE: 'delete' })).toMatchObject({
      nfs: { onRemove: 'delete' },
      efs: { onRemove: 'delete' },
    });
    expect(load({ ON_REMOVE: 'archive' })).toMatchObject({
      nfs: { onRemove: 'archive' },
      efs: { onRemove: 'retain' },
    });
    expect(errorFor({ ON_REMOVE: 'keep' })).toContain(
      'nfs.onRemove: "keep" is not one of purge, retain, delete, archive (set by ON_REMOVE)',
    );
  });

  it('RANCHER_DEBUG=true is log level debug; false changes nothing', () => {
    expect(load({ RANCHER_DEBUG: 'true' }).log.level).toBe('debug');
    expect(load({ RANCHER_DEBUG: 'false' }).log.level).toBe('info');
    expect(errorFor({ RANCHER_DEBUG: 'maybe' })).toContain('(set by RANCHER_DEBUG)');
  });
});

describe('precedence: file < Rancher name < STOWAGE_* < flags', () => {
  it('each source wins over the ones before it', async () => {
    await writeFile(file, 'nfs:\n  server: from-file\n  nfsVersion: "4"\nlog:\n  level: warn\n');
    expect(load({}).nfs.server).toBe('from-file');
    expect(load({ NFS_SERVER: 'rancher' }).nfs.server).toBe('rancher');
    expect(load({ NFS_SERVER: 'rancher', STOWAGE_NFS_SERVER: 'stowage' }).nfs.server).toBe('stowage');
    expect(load({ NFS_VERS: '3', STOWAGE_NFS_NFS_VERSION: '4.2' }).nfs.nfsVersion).toBe('4.2');
    expect(load({ RANCHER_DEBUG: 'true', STOWAGE_LOG_LEVEL: 'error' }).log.level).toBe('error');
    expect(load({ RANCHER_DEBUG: 'true' }, { log: { level: 'trace' } }).log.level).toBe('trace');
    expect(load({ ON_REMOVE: 'purge', STOWAGE_EFS_ON_REMOVE: 'retain' }).efs.onRemove).toBe('retain');
  });

  it('readEnvironment says which variable set each key', () => {
    const layer = readEnvironment(ConfigSchema, {
      NFS_SERVER: 'a',
      STOWAGE_NFS_SERVER: 'b',
      MOUNT_OPTS: 'vers=3',
    });
    expect(layer.origins.get('nfs.server')).toBe('STOWAGE_NFS_SERVER');
    expect(layer.origins.get('nfs.nfsVersion')).toBe('MOUNT_OPTS');
    expect(layer.values).toEqual({ nfs: { server: 'b', mountOptions: [], nfsVersion: '3' } });
  });
});

describe('errors name the variable that set the bad value', () => {
  it('a value the schema refuses, from a STOWAGE_* or a Rancher name', () => {
    expect(errorFor({ STOWAGE_TIMEOUTS_COMMAND_MS: '0' })).toMatch(
      /\n {2}timeouts\.commandMs: .*\(set by STOWAGE_TIMEOUTS_COMMAND_MS\)/,
    );
    expect(errorFor({ NFS_VERS: '5' })).toMatch(/nfs\.nfsVersion: Invalid option.*\(set by NFS_VERS\)/);
    expect(errorFor({ STOWAGE_DATA_DIR: 'relative' })).toContain(
      'dataDir: must be an absolute path (set by STOWAGE_DATA_DIR)',
    );
  });

  it('a number or boolean that is not one', () => {
    const message = errorFor({ STOWAGE_TIMEOUTS_COMMAND_MS: '30s', STOWAGE_HOSTS_TAKE_OVER_GONE: 'sure' });
    expect(message).toMatch(/^invalid configuration \(file .*, environment and flags\):\n/);
    expect(message).toContain(
      '  timeouts.commandMs: "30s" is not a number (set by STOWAGE_TIMEOUTS_COMMAND_MS)',
    );
    expect(message).toContain('  hosts.takeOverGone: "sure" is not a boolean');
  });

  it('a bad value from a flag or the file says so, or nothing, not a variable', async () => {
    await writeFile(file, 'log:\n  level: loud\n');
    expect(errorFor({})).toMatch(/ {2}log\.level: Invalid option[^\n(]*$/);
    expect(() => load({}, { hostId: '-x' })).toThrow(/hostId: .*\(set by a command-line flag\)/);
  });
});

describe('sizes and durations are checked at load', () => {
  it('bad sizes and durations are refused naming the key and the variable', () => {
    const message = errorFor({
      STOWAGE_LOCAL_DEFAULT_SIZE: 'big',
      STOWAGE_LOCAL_MAX_SIZE: '1X',
      STOWAGE_NFS_MOUNT_TIMEOUT: '30 sec',
      STOWAGE_EBS_CREATE_TIMEOUT: '0',
      STOWAGE_EBS_ATTACH_TIMEOUT: '-1m',
      STOWAGE_EBS_MODIFY_TIMEOUT: 'soon',
      STOWAGE_EFS_MOUNT_TIMEOUT: '1d',
      STOWAGE_EFS_CREATE_TIMEOUT: 'x',
    });
    expect(message).toContain('local.defaultSize: size "big" is not a size');
    expect(message).toContain('(set by STOWAGE_LOCAL_DEFAULT_SIZE)');
    for (const key of [
      'local.maxSize',
      'nfs.mountTimeout',
      'ebs.createTimeout',
      'ebs.attachTimeout',
      'ebs.modifyTimeout',
      'efs.mountTimeout',
      'efs.createTimeout',
    ]) {
      expect(message).toContain(`  ${key}: `);
    }
    expect(message).toContain('nfs.mountTimeout: duration "30 sec" is not a duration');
  });

  it('good ones pass, from the file too', async () => {
    await writeFile(file, 'local:\n  maxSize: 512GiB\nebs:\n  createTimeout: 90s\n');
    const c = load({ STOWAGE_LOCAL_DEFAULT_SIZE: '64M', STOWAGE_EFS_MOUNT_TIMEOUT: '1500ms' });
    expect(c.local).toMatchObject({ defaultSize: '64M', maxSize: '512GiB' });
    expect(c.ebs.createTimeout).toBe('90s');
    expect(c.efs.mountTimeout).toBe('1500ms');
  });
});
