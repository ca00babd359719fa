import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isStowageError, type StowageError } from '../src/base/errors.js';
import { type ConfigSources, loadConfig } from '../src/config.js';

/**
 * loadConfig: defaults, paths derived from dataDir, the precedence file < environment < flags and
 * the CONFIG errors a user sees for a bad file. Every call passes `env` and an explicit `file`, so
 * the machine's /etc/stowage/config.yaml and the runner's environment cannot leak in.
 */

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-config-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `text` to a file named `name` in the temp directory and returns its path. */
async function configFile(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

/** The CONFIG error loadConfig throws for these sources; fails the test when it returns. */
function configError(sources: ConfigSources): StowageError {
  let thrown: unknown;
  try {
    loadConfig(sources);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'loadConfig did not throw').toBeDefined();
  expect(isStowageError(thrown), `not a StowageError: ${String(thrown)}`).toBe(true);
  const err = thrown as StowageError;
  expect(err.code).toBe('CONFIG');
  expect(err.retryable).toBe(false);
  return err;
}

describe('defaults', () => {
  it('an empty file and no environment give the documented defaults', async () => {
    const file = await configFile('config.yaml', '');
    const config = loadConfig({ file, env: {} });
    expect(config).toEqual({
      hostId: hostname(),
      dataDir: '/var/lib/stowage',
      state: '/var/lib/stowage/state.db',
      mountRoot: '/var/lib/stowage/volumes',
      stagingDir: '/var/lib/stowage/staging',
      socketDir: '/run/docker/plugins',
      socketPrefix: 'stowage-',
      drivers: ['local'],
      log: { level: 'info' },
      metrics: {},
      timeouts: {
        commandMs: 30_000,
        mountMs: 30_000,
        mkfsMs: 120_000,
        deviceWaitMs: 30_000,
        lockWaitMs: 10_000,
        lockTtlMs: 600_000,
      },
      etcd: { requestTimeoutMs: 5_000, leaseTtlSeconds: 15 },
      hosts: { takeOverGone: false },
      flexvolume: { kubeletDir: '/var/lib/kubelet', callTimeoutMs: 300_000 },
      local: {
        imageDir: '/var/lib/stowage/local',
        defaultSize: '1G',
        maxSize: '1T',
        defaultFsType: 'ext4',
      },
      nfs: { mountOptions: [], nfsVersion: '4.1', onRemove: 'retain', mode: '0755', mountTimeout: '30s' },
      aws: { maxAttempts: 5, requestTimeoutMs: 30_000 },
      efs: {
        mountOptions: [
          'nfsvers=4.1',
          'rsize=1048576',
          'wsize=1048576',
          'hard',
          'timeo=600',
          'retrans=2',
          'noresvport',
        ],
        onRemove: 'retain',
        mountTimeout: '30s',
        createTimeout: '10m',
      },
      ebs: {
        defaultSizeGiB: 10,
        defaultType: 'gp3',
        defaultFsType: 'ext4',
        createTimeout: '5m',
        attachTimeout: '2m',
        modifyTimeout: '2m',
        devDir: '/dev',
        byIdDir: '/dev/disk/by-id',
        sysBlockDir: '/sys/block',
      },
      source: file,
    });
  });

  it('a file holding only a YAML comment, or an empty JSON object, is the same as no settings', async () => {
    const yaml = await configFile('comment.yaml', '# nothing set here\n');
    const json = await configFile('empty.json', '{}');
    const a = loadConfig({ file: yaml, env: {} });
    const b = loadConfig({ file: json, env: {} });
    expect({ ...a, source: undefined }).toEqual({ ...b, source: undefined });
    expect(a.source).toBe(yaml);
    expect(b.source).toBe(json);
    expect(b.dataDir).toBe('/var/lib/stowage');
  });

  it('reads the NFS defaults from STOWAGE_NFS_SERVER and STOWAGE_NFS_SHARE', async () => {
    const file = await configFile('config.yaml', 'nfs:\n  server: from-file\n');
    const config = loadConfig({
      file,
      env: { STOWAGE_NFS_SERVER: 'nas1', STOWAGE_NFS_SHARE: '/exports/docker' },
    });
    expect(config.nfs).toMatchObject({ server: 'nas1', share: '/exports/docker' });
  });

  it('$STOWAGE_CONFIG names the file when no explicit file is given', async () => {
    const file = await configFile('from-env.yaml', 'socketPrefix: envfile-\n');
    const config = loadConfig({ env: { STOWAGE_CONFIG: file } });
    expect(config.socketPrefix).toBe('envfile-');
    expect(config.source).toBe(file);
  });
});

describe('paths derived from dataDir', () => {
  it('state, mountRoot and local.imageDir follow dataDir when not set', async () => {
    const file = await configFile('config.yaml', 'dataDir: /srv/stowage\n');
    const config = loadConfig({ file, env: {} });
    expect(config.dataDir).toBe('/srv/stowage');
    expect(config.state).toBe('/srv/stowage/state.db');
    expect(config.mountRoot).toBe('/srv/stowage/volumes');
    expect(config.local.imageDir).toBe('/srv/stowage/local');
  });

  it('explicit state, mountRoot and local.imageDir are kept as they are', async () => {
    const file = await configFile(
      'config.yaml',
      [
        'dataDir: /srv/stowage',
        'state: /db/stowage.sqlite',
        'mountRoot: /mnt/volumes',
        'local:',
        '  imageDir: /images',
        '  maxSize: 2T',
        '',
      ].join('\n'),
    );
    const config = loadConfig({ file, env: {} });
    expect(config.state).toBe('/db/stowage.sqlite');
    expect(config.mountRoot).toBe('/mnt/volumes');
    expect(config.local).toEqual({
      imageDir: '/images',
      defaultSize: '1G',
      maxSize: '2T',
      defaultFsType: 'ext4',
    });
  });
});

describe('precedence: file < environment < flags', () => {
  it('the environment overrides the file, and flags override both', async () => {
    const file = await configFile(
      'config.yaml',
      ['dataDir: /from/file', 'socketPrefix: file-', 'log:', '  level: warn', ''].join('\n'),
    );
    const env = { STOWAGE_DATA_DIR: '/from/env', STOWAGE_SOCKET_PREFIX: 'env-' };

    expect(loadConfig({ file, env: {} }).dataDir).toBe('/from/file');

    const fromEnv = loadConfig({ file, env });
    expect(fromEnv.dataDir).toBe('/from/env');
    expect(fromEnv.socketPrefix).toBe('env-');
    expect(fromEnv.log.level).toBe('warn');
    expect(fromEnv.state).toBe('/from/env/state.db');

    const fromFlags = loadConfig({ file, env, flags: { dataDir: '/from/flags', log: { level: 'debug' } } });
    expect(fromFlags.dataDir).toBe('/from/flags');
    expect(fromFlags.socketPrefix).toBe('env-');
    expect(fromFlags.log.level).toBe('debug');
    expect(fromFlags.mountRoot).toBe('/from/flags/volumes');
  });

  it('nested sections are merged key by key, not replaced', async () => {
    const file = await configFile(
      'config.yaml',
      ['log:', '  file: /var/log/stowage.log', 'timeouts:', '  mountMs: 5000', ''].join('\n'),
    );
    const config = loadConfig({
      file,
      env: { STOWAGE_LOG_LEVEL: 'error' },
      flags: { timeouts: { lockWaitMs: 50 } },
    });
    expect(config.log).toEqual({ level: 'error', file: '/var/log/stowage.log' });
    expect(config.timeouts).toMatchObject({ mountMs: 5000, lockWaitMs: 50, commandMs: 30_000 });
  });

  it('empty environment variables and undefined flags (options not given) change nothing', async () => {
    const file = await configFile('config.yaml', 'hostId: node-7\nsocketDir: /run/plugins\n');
    const config = loadConfig({
      file,
      env: { STOWAGE_HOST_ID: '', STOWAGE_SOCKET_DIR: '' },
      flags: { hostId: undefined, socketDir: undefined, log: { level: undefined } },
    });
    expect(config.hostId).toBe('node-7');
    expect(config.socketDir).toBe('/run/plugins');
    expect(config.log.level).toBe('info');
  });

  it('every STOWAGE_* variable lands on its key', async () => {
    const file = await configFile('config.yaml', '');
    const config = loadConfig({
      file,
      env: {
        STOWAGE_HOST_ID: 'h1',
        STOWAGE_DATA_DIR: '/d',
        STOWAGE_STATE: '/s/state.db',
        STOWAGE_MOUNT_ROOT: '/m',
        STOWAGE_SOCKET_DIR: '/sock',
        STOWAGE_SOCKET_PREFIX: 'p-',
        STOWAGE_LOG_LEVEL: 'trace',
        STOWAGE_LOG_FILE: '/l/stowage.log',
        UNRELATED: 'ignored',
      },
    });
    expect(config).toMatchObject({
      hostId: 'h1',
      dataDir: '/d',
      state: '/s/state.db',
      mountRoot: '/m',
      socketDir: '/sock',
      socketPrefix: 'p-',
      log: { level: 'trace', file: '/l/stowage.log' },
      local: { imageDir: '/d/local' },
    });
  });

  it('STOWAGE_DRIVERS is a comma list; blanks and spaces around names are dropped', async () => {
    const file = await configFile('config.yaml', 'drivers: [nfs]\n');
    expect(loadConfig({ file, env: {} }).drivers).toEqual(['nfs']);
    expect(loadConfig({ file, env: { STOWAGE_DRIVERS: 'local' } }).drivers).toEqual(['local']);
    expect(loadConfig({ file, env: { STOWAGE_DRIVERS: ' local, nfs,,ebs ,' } }).drivers).toEqual([
      'local',
      'nfs',
      'ebs',
    ]);
    // A list that is only separators is no list at all: refused, not silently "no drivers".
    const err = configError({ file, env: { STOWAGE_DRIVERS: ' , ' } });
    expect(err.message).toContain('drivers:');
  });

  it('reads JSON files as JSON', async () => {
    const file = await configFile(
      'config.json',
      JSON.stringify({ dataDir: '/json', timeouts: { mkfsMs: 1000 }, local: { defaultFsType: 'xfs' } }),
    );
    const config = loadConfig({ file, env: {} });
    expect(config.dataDir).toBe('/json');
    expect(config.timeouts.mkfsMs).toBe(1000);
    expect(config.local.defaultFsType).toBe('xfs');
  });
});

describe('invalid configuration', () => {
  it('an unknown key in a section (a typo) is refused, naming the section and the key', async () => {
    const file = await configFile('config.yaml', 'timeouts:\n  mountMS: 5000\n');
    const err = configError({ file, env: {} });
    expect(err.message).toContain(`invalid configuration (file ${file}, environment and flags)`);
    expect(err.message).toMatch(/timeouts\b.*mountMS/);
  });

  it('an unknown top-level key is refused, naming it', async () => {
    const file = await configFile('config.yaml', 'dataDir: /srv\nmountroot: /mnt\n');
    const err = configError({ file, env: {} });
    expect(err.message).toContain('mountroot');
    expect(err.message).not.toContain('dataDir');
  });

  it('an unknown key given as a flag is refused too', async () => {
    const file = await configFile('config.yaml', '');
    const err = configError({ file, env: {}, flags: { local: { imagedir: '/x' } } });
    expect(err.message).toMatch(/local\b.*imagedir/);
  });

  it('a value of the wrong type is refused, naming its key path', async () => {
    const file = await configFile('config.yaml', 'timeouts:\n  mountMs: "5000"\nlog:\n  level: loud\n');
    const err = configError({ file, env: {} });
    const lines = err.message.split('\n').slice(1);
    expect(lines).toHaveLength(2);
    expect(lines.find((l) => l.startsWith('  timeouts.mountMs: '))).toMatch(/expected number/);
    expect(lines.find((l) => l.startsWith('  log.level: '))).toMatch(/trace.*fatal/);
  });

  it('numbers out of range are refused with the key', async () => {
    const file = await configFile('config.yaml', 'timeouts:\n  lockWaitMs: 0\n  mkfsMs: 1.5\n');
    const err = configError({ file, env: {} });
    expect(err.message).toContain('timeouts.lockWaitMs:');
    expect(err.message).toContain('timeouts.mkfsMs:');
  });

  it('a relative path is refused, from the file and from the environment', async () => {
    const file = await configFile('config.yaml', 'mountRoot: volumes\n');
    expect(configError({ file, env: {} }).message).toContain('mountRoot: must be an absolute path');

    const empty = await configFile('empty.yaml', '');
    const err = configError({ file: empty, env: { STOWAGE_DATA_DIR: 'var/lib/stowage' } });
    expect(err.message).toContain('dataDir: must be an absolute path');
    // The message says where to look.
    expect(err.message).toContain(`file ${empty}`);
  });

  it('bad host ids and socket prefixes are refused', async () => {
    const file = await configFile('config.yaml', '');
    expect(configError({ file, env: { STOWAGE_HOST_ID: '-bad host' } }).message).toContain(
      'hostId: must be a hostname-like id',
    );
    expect(configError({ file, env: { STOWAGE_SOCKET_PREFIX: 'Stowage/' } }).message).toContain(
      'socketPrefix:',
    );
  });

  it('invalid YAML names the file', async () => {
    const file = await configFile('broken.yaml', 'timeouts: [\n  mountMs: 1\n');
    const err = configError({ file, env: {} });
    expect(err.message).toContain(`config file ${file} is not valid YAML`);
  });

  it('invalid JSON names the file and says JSON', async () => {
    const file = await configFile('broken.json', '{"dataDir": "/x",}');
    const err = configError({ file, env: {} });
    expect(err.message).toContain(`config file ${file} is not valid JSON`);
  });

  it('a file holding a list (or a scalar) instead of a mapping is refused', async () => {
    const list = await configFile('list.yaml', '- dataDir: /x\n- hostId: y\n');
    expect(configError({ file: list, env: {} }).message).toBe(
      `config file ${list} must hold a mapping of keys to values`,
    );
    const scalar = await configFile('scalar.json', '"just a string"');
    expect(configError({ file: scalar, env: {} }).message).toBe(
      `config file ${scalar} must hold a mapping of keys to values`,
    );
  });

  it('a missing explicit file is an error naming it, not a silent fall back to defaults', () => {
    const file = join(dir, 'no-such.yaml');
    const err = configError({ file, env: {} });
    expect(err.message).toContain(`cannot read config file ${file}`);
    expect(err.message).toContain('ENOENT');
  });

  it('a missing file named by $STOWAGE_CONFIG is an error too', () => {
    const file = join(dir, 'gone.yaml');
    expect(configError({ env: { STOWAGE_CONFIG: file } }).message).toContain(
      `cannot read config file ${file}`,
    );
  });
});

describe('unknown keys (regression)', () => {
  it('names an unknown nested key by its full path', async () => {
    const file = await configFile('config.yaml', 'timeouts:\n  mountMS: 5000\n');
    expect(configError({ file, env: {} }).message).toContain('  timeouts.mountMS: unknown key');
  });
});
