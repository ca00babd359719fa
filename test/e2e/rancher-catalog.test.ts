import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { pollUntil } from '../../src/base/backoff.js';
import { StowageError } from '../../src/base/errors.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { FakeImds } from '../fakes/aws/imds.js';
import { callPlugin } from '../helpers/plugin-client.js';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { docker, PLUGIN_DIR, removeContainersOutside, TEST_IMAGE } from './env.js';
import { ensureNfsPackages, freePort, type Ganesha, startGanesha } from './nfs/ganesha.js';
import { stowageImage } from './stowage-image.js';

/**
 * The Rancher 1.6 catalog stacks (deploy/rancher-catalog) deployed for real: the stack's own
 * docker-compose.yml, with the answers substituted the way Rancher does (`${VAR}` from the answers,
 * a question's default when unanswered), brought up with docker-compose 1.29 against this file's
 * private dockerd and the stowage image. Docker then finds the driver under the stack's
 * storage_driver name (rancher-ebs, rancher-nfs) and a volume goes through its lifecycle; the
 * Rancher answer names (NFS_SERVER, MOUNT_DIR, ...) are read back from the running container's
 * effective config.
 *
 * Only what this machine cannot do as a Rancher host can is changed, in an override file (see
 * overrideFile()); the catalog's files are used unchanged.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const CATALOG = join(ROOT, 'deploy', 'rancher-catalog', 'infra-templates');
const COMPOSE = '/usr/bin/docker-compose';

const INSTANCE = 'i-0e2e000000000ca71';
const AZ = 'us-west-2c';
const REGION = 'us-west-2';
const AWS_KEY = 'AKIDRANCHERCATALOG';
const AWS_SECRET = 'rancher-catalog-secret-for-tests-only';

/** Every docker volume this file may create, removed in afterAll whatever happened. */
const VOLUMES = ['rebs-data', 'rebs-kept', 'rnfs-data'];

let dockerd: PrivateDockerd | undefined;
let image: string;
let base: string | undefined;
/**
 * Stands in for the host's /var/lib/stowage: a shared mount (`mount --bind D D; mount
 * --make-rshared D`), because Docker refuses an rshared bind of a directory on a private mount and
 * this VM's / is private (no systemd making it shared; docs/rancher.md "Before you start").
 */
let sharedDir: string | undefined;
let sharedMounted = false;
let ec2: FakeEc2 | undefined;
let imds: FakeImds | undefined;
let ganesha: Ganesha | undefined;
const stacks: Stack[] = [];

// --- the catalog, rendered as Rancher renders it ---------------------------------------------------

interface Question {
  variable: string;
  type: string;
  required?: boolean;
  default?: unknown;
}

interface Rendered {
  /** The compose document after substitution (what Rancher hands to its compose executor). */
  compose: Record<string, unknown>;
  /** `storage_driver.name` from rancher-compose.yml: the driver name Rancher registers. */
  storageDriver: string;
  serviceName: string;
  answers: Record<string, string>;
}

/**
 * Rancher 1.6's interpolation of one string value: `$$` is a literal `$`, `${VAR}` and `$VAR` are
 * the answer (empty when none). `${VAR:-x}` and other shell forms are not Rancher's: refused here
 * as Rancher would refuse the template.
 */
function interpolate(value: string, answers: Record<string, string>): string {
  return value.replace(/\$(\$|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (whole, all, braced, plain) => {
    if (all === '$') return '$';
    const name = (braced ?? plain) as string;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new Error(`${whole}: Rancher 1.6 interpolates only $VAR and \${VAR}`);
    return answers[name] ?? '';
  });
}

/** Interpolates every string value (never keys) of a parsed compose document, as compose does. */
function interpolateTree(node: unknown, answers: Record<string, string>): unknown {
  if (typeof node === 'string') return interpolate(node, answers);
  if (Array.isArray(node)) return node.map((n) => interpolateTree(n, answers));
  if (node && typeof node === 'object')
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateTree(v, answers)]));
  return node;
}

/** docker-compose interpolates again: every `$` that Rancher's pass produced must stay literal. */
function escapeDollars(node: unknown): unknown {
  if (typeof node === 'string') return node.replaceAll('$', '$$');
  if (Array.isArray(node)) return node.map(escapeDollars);
  if (node && typeof node === 'object')
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, escapeDollars(v)]));
  return node;
}

/**
 * The stack of `stowage-<driver>` with `given` answers: every other question takes its default
 * from rancher-compose.yml (a required question without one must be answered, as Rancher's form
 * demands); an answer to no question is a mistake in the test.
 */
async function renderStack(driver: string, given: Record<string, string>): Promise<Rendered> {
  const dir = join(CATALOG, `stowage-${driver}`, '0');
  const rancher = parseYaml(await readFile(join(dir, 'rancher-compose.yml'), 'utf8')) as Record<
    string,
    { questions?: Question[]; storage_driver?: { name?: string } }
  >;
  const questions = rancher['.catalog']?.questions ?? [];
  const unknown = Object.keys(given).filter((v) => !questions.some((q) => q.variable === v));
  if (unknown.length > 0) throw new Error(`stowage-${driver} asks no question ${unknown.join(', ')}`);
  const answers: Record<string, string> = {};
  for (const q of questions) {
    const value =
      given[q.variable] ?? (q.default === undefined || q.default === null ? undefined : String(q.default));
    if (value === undefined && q.required)
      throw new Error(`stowage-${driver}: ${q.variable} is required and has no default`);
    answers[q.variable] = value ?? '';
  }
  const services = Object.entries(rancher).filter(([k, v]) => k !== '.catalog' && v.storage_driver);
  if (services.length !== 1) throw new Error(`stowage-${driver}: expected one service with storage_driver`);
  const [serviceName, service] = services[0]!;
  const compose = interpolateTree(
    parseYaml(await readFile(join(dir, 'docker-compose.yml'), 'utf8')),
    answers,
  ) as Record<string, unknown>;
  return { compose, storageDriver: service.storage_driver!.name!, serviceName, answers };
}

// --- docker-compose --------------------------------------------------------------------------------

interface Stack {
  driver: string;
  project: string;
  dir: string;
  files: string[];
  rendered: Rendered;
  /** /run/docker/plugins/<storage_driver>.sock */
  socket: string;
}

/**
 * What this VM needs on top of the catalog's file, and why:
 * - `privileged: true` does not start here (runc: "unable to apply caps"): the container gets the
 *   one capability stowage uses (SYS_ADMIN: mount), no AppArmor confinement (the default profile
 *   denies mount), and the loop block devices (major 7) and /dev/loop-control (10:237) in its
 *   device cgroup — what privileged would have given it for the volumes' devices in /dev.
 * - The state directory: the catalog binds the host's /var/lib/stowage rshared. Here it is the
 *   shared temp directory instead, bound twice: over /var/lib/stowage (replacing the catalog's
 *   entry, so nothing touches the host's real directory) and at its own path, with the data
 *   directory there. dockerd (on the host) bind-mounts the Mountpoint stowage answers, so the
 *   volumes' mount points must have the same path inside the container and outside.
 * - `extra` environment: where the test's fake cloud lives (EC2 endpoint, instance metadata,
 *   the directory the fake's attachment links appear in).
 */
function overrideFile(stack: { driver: string; serviceName: string }, extra: Record<string, string>) {
  const shared = sharedDir!;
  return {
    version: '2',
    services: {
      [stack.serviceName]: {
        privileged: false,
        cap_add: ['SYS_ADMIN'],
        security_opt: ['apparmor:unconfined'],
        device_cgroup_rules: ['b 7:* rmw', 'c 10:237 rmw'],
        environment: { STOWAGE_DATA_DIR: join(shared, `rancher-${stack.driver}`), ...extra },
        volumes: [`${shared}:/var/lib/stowage:rshared`, `${shared}:${shared}:rshared`],
      },
    },
  };
}

async function compose(stack: Stack, args: string[], timeoutMs = 180_000) {
  const res = await execa(COMPOSE, ['-p', stack.project, ...stack.files.flatMap((f) => ['-f', f]), ...args], {
    // Only what docker-compose needs: no variable of this process may reach the interpolation.
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      DOCKER_HOST: dockerd!.host,
    },
    extendEnv: false,
    cwd: stack.dir,
    reject: false,
    timeout: timeoutMs,
    stdin: 'ignore',
  });
  return {
    exitCode: res.exitCode ?? -1,
    stdout: String(res.stdout).trim(),
    stderr: String(res.stderr).trim(),
  };
}

/** Renders the stack, writes it and the override to a temp dir, and runs `up -d`. */
async function deployStack(
  driver: string,
  answers: Record<string, string>,
  extraEnv: Record<string, string>,
): Promise<Stack> {
  const rendered = await renderStack(driver, answers);
  const dir = join(base!, `stack-${driver}`);
  await mkdir(dir, { recursive: true });
  const main = join(dir, 'docker-compose.yml');
  const override = join(dir, 'machine-override.yml');
  await writeFile(main, stringifyYaml(escapeDollars(rendered.compose)));
  await writeFile(
    override,
    stringifyYaml(overrideFile({ driver, serviceName: rendered.serviceName }, extraEnv)),
  );
  const stack: Stack = {
    driver,
    project: `stowage-rc-${driver}-${process.pid}`,
    dir,
    files: [main, override],
    rendered,
    socket: join(PLUGIN_DIR, `${rendered.storageDriver}.sock`),
  };
  // /run/docker/plugins is the machine's: a live rancher-<driver> socket would be another stowage
  // (or Rancher's own stack) answering in our place.
  const other = await callPlugin(stack.socket, 'Plugin.Activate', {}, 1000).catch(() => undefined);
  if (other)
    throw new Error(`${stack.socket} already answers: another process serves ${rendered.storageDriver}`);
  stacks.push(stack);
  const config = await compose(stack, ['config']);
  if (config.exitCode !== 0 || /variable is not set/i.test(config.stderr))
    throw new Error(`docker-compose config refused the rendered stack:\n${config.stderr}`);
  const up = await compose(stack, ['up', '-d']);
  if (up.exitCode !== 0) throw new Error(`docker-compose up failed:\n${up.stderr}`);
  await waitForSocket(stack);
  return stack;
}

async function containerOf(stack: Stack): Promise<string> {
  const ps = await compose(stack, ['ps', '-q', stack.rendered.serviceName], 30_000);
  const id = ps.stdout.split('\n')[0]?.trim();
  if (ps.exitCode !== 0 || !id) throw new Error(`no container for ${stack.project}: ${ps.stderr}`);
  return id;
}

/**
 * The socket answers Plugin.Activate. Short first steps (the daemon starts in ~1 s), a 90 s
 * deadline, and a container that exits (restart: always would hide it) fails the wait at once.
 */
async function waitForSocket(stack: Stack): Promise<void> {
  const id = await containerOf(stack);
  const logs = async () => (await docker(['logs', '--tail', '30', id])).stderr;
  await pollUntil(
    async () => {
      const state = await docker(['inspect', '--format', '{{.State.Status}} {{.RestartCount}}', id]);
      const [status, restarts] = state.stdout.split(' ');
      if (status !== 'running' || Number(restarts) > 0)
        throw new Error(`stowage container ${status}, ${restarts} restarts:\n${await logs()}`);
      const res = await callPlugin(stack.socket, 'Plugin.Activate', {}, 2000).catch(() => undefined);
      return res?.status === 200 ? true : undefined;
    },
    { timeoutMs: 90_000, initialDelayMs: 50, maxDelayMs: 1000, what: `${stack.socket} to answer` },
  ).catch(async (err: unknown) => {
    // A timeout says only what it waited for: the container's last lines say why.
    if (err instanceof StowageError && err.code === 'TIMEOUT')
      throw new Error(`${err.message}\n${await logs()}`);
    throw err;
  });
}

/** `stowage <args>` in the stack's container, as an operator runs it (docs/rancher.md). */
async function stowageIn(stack: Stack, args: string[]) {
  return docker(['exec', await containerOf(stack), 'stowage', ...args]);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function runBusybox(args: string[]) {
  return docker(['run', '--rm', '--network', 'none', ...args], 120_000);
}

// --- setup and cleanup -----------------------------------------------------------------------------

beforeAll(async () => {
  dockerd = await startDockerd();
  image = await stowageImage(dockerd);
  base = await mkdtemp(join(tmpdir(), 'stowage-rancher-'));
  sharedDir = join(base, 'var-lib-stowage');
  await mkdir(sharedDir);
  await execa('mount', ['--bind', sharedDir, sharedDir]);
  sharedMounted = true;
  await execa('mount', ['--make-rshared', sharedDir]);
}, 900_000);

/** Runs every step, collects what failed, and reports it at the end: one failure skips nothing. */
afterAll(async () => {
  const failures: string[] = [];
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      failures.push(`${what}: ${(err as Error).message}`);
    }
  };
  if (dockerd) {
    const d = dockerd;
    const ok = (what: string, res: { exitCode: number; stderr: string }) => {
      if (res.exitCode !== 0) throw new Error(`${what} exited ${res.exitCode}: ${res.stderr}`);
    };
    const stackProjects = new Set(stacks.map((s) => s.project));
    // Test containers a failed test left running, while the stacks still serve their volumes: once
    // a driver is gone, dockerd retries its Unmount for 30 s and may be stopped with the container
    // still running.
    await step('test containers', () => removeContainersOutside(stackProjects));
    // Volumes next, while the stacks still serve them (ebs detaches, nfs unmounts).
    for (const v of VOLUMES)
      await step(`docker volume rm ${v}`, async () =>
        ok('docker volume rm', await docker(['volume', 'rm', '-f', v], 120_000)),
      );
    for (const stack of stacks) {
      await step(`compose down ${stack.project}`, async () =>
        ok(
          'docker-compose down',
          await compose(stack, ['down', '--volumes', '--remove-orphans', '--timeout', '20'], 120_000),
        ),
      );
      await step(`containers of ${stack.project}`, async () => {
        const ids = await docker([
          'ps',
          '-aq',
          '--filter',
          `label=com.docker.compose.project=${stack.project}`,
        ]);
        for (const id of ids.stdout.split('\n').filter(Boolean))
          ok(`docker rm -f ${id}`, await docker(['rm', '-f', '-v', id]));
      });
    }
    // stop() also kills container processes that outlive dockerd (their shims).
    await step('dockerd stop', () => d.stop());
  }
  await step('fake EC2 stop', async () => ec2?.stop());
  await step('fake IMDS stop', async () => imds?.stop());
  await step('ganesha stop', async () => ganesha?.stop());
  // Sockets the stacks left behind (stowage removes its own on SIGTERM; a killed one cannot).
  for (const stack of stacks) {
    await step(`socket ${stack.socket}`, async () => {
      if (!existsSync(stack.socket)) return;
      const alive = await callPlugin(stack.socket, 'Plugin.Activate', {}, 1000).then(
        () => true,
        () => false,
      );
      if (!alive) await unlink(stack.socket);
    });
  }
  if (base) {
    const root = base;
    // Mounts under the temp dir, deepest first: volumes stowage mounted (they propagated to the
    // host through the rshared bind), then the shared bind itself.
    await step('unmount', async () => {
      const info = await readFile('/proc/self/mountinfo', 'utf8');
      const points = info
        .split('\n')
        .map((l) => l.split(' ')[4])
        .filter((p): p is string => p !== undefined && (p === root || p.startsWith(`${root}/`)))
        .sort((a, b) => b.length - a.length);
      for (const p of points) await execa('umount', ['-l', p], { reject: false });
      if (sharedMounted && sharedDir) await execa('umount', ['-l', sharedDir], { reject: false });
    });
    await step('loop devices', async () => {
      const res = await execa('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], {
        reject: false,
      });
      const rows = res.stdout
        ? (JSON.parse(res.stdout) as { loopdevices: { name: string; 'back-file': string | null }[] })
        : undefined;
      for (const d of rows?.loopdevices ?? []) {
        if (d['back-file']?.startsWith(`${root}/`)) await execa('losetup', ['-d', d.name], { reject: false });
      }
    });
    await step('temp dir', () => rm(root, { recursive: true, force: true }));
  }
  if (failures.length > 0) throw new Error(`cleanup failed:\n${failures.join('\n')}`);
}, 300_000);

// --- rancher-ebs -----------------------------------------------------------------------------------

describe('stowage-ebs catalog stack under docker-compose: rancher-ebs with the suite EC2 endpoint', () => {
  let stack: Stack;
  const ebsVolume = (name: string) => ec2!.volumes.find((v) => v.tags.Name === name && v.state !== 'deleted');

  beforeAll(async () => {
    // Attachments appear as links in a directory the container sees at the same path (it is in
    // the shared directory), pointing at /dev/loopN, which it sees through the stack's /dev bind.
    const devDir = join(sharedDir!, 'ebs-dev');
    const byIdDir = join(devDir, 'disk', 'by-id');
    await mkdir(byIdDir, { recursive: true });
    ec2 = await FakeEc2.start({
      region: REGION,
      blockDevices: { imageDir: join(base!, 'ec2'), devDir, byIdDir },
    });
    ec2.addInstance({ instanceId: INSTANCE, availabilityZone: AZ, usedDevices: ['/dev/xvda'] });
    // Host network: the container reaches both on 127.0.0.1, as it reaches the real IMDS.
    imds = await FakeImds.start({ instanceId: INSTANCE, availabilityZone: AZ, region: REGION });
    stack = await deployStack(
      'ebs',
      { AWS_ACCESS_KEY_ID: AWS_KEY, AWS_SECRET_ACCESS_KEY: AWS_SECRET },
      {
        STOWAGE_EBS_ENDPOINT: ec2.url,
        STOWAGE_AWS_IMDS_ENDPOINT: imds.url,
        STOWAGE_EBS_DEV_DIR: devDir,
        STOWAGE_EBS_BY_ID_DIR: byIdDir,
      },
    );
  }, 300_000);

  it('comes up from the catalog file with the defaults Rancher fills in, on rancher-ebs.sock', async () => {
    expect(stack.rendered.storageDriver).toBe('rancher-ebs');
    expect(stack.socket).toBe(join(PLUGIN_DIR, 'rancher-ebs.sock'));
    // Unanswered questions took rancher-compose.yml's defaults: the image is the one under test.
    expect(stack.rendered.answers).toMatchObject({
      STOWAGE_IMAGE: image,
      RANCHER_DEBUG: 'false',
      STOWAGE_STATE: '',
    });
    const activate = await callPlugin(stack.socket, 'Plugin.Activate');
    expect(activate.body).toMatchObject({ Implements: ['VolumeDriver'] });
    const cfg = await stowageIn(stack, ['config', '--json']);
    expect(cfg.exitCode, cfg.stderr).toBe(0);
    const c = JSON.parse(cfg.stdout) as Record<string, unknown>;
    expect(c).toMatchObject({
      drivers: ['ebs'],
      socketPrefix: 'rancher-',
      dataDir: join(sharedDir!, 'rancher-ebs'),
    });
    expect(c.log).toMatchObject({ level: 'info' }); // RANCHER_DEBUG=false leaves the level alone
  });

  it('creates an EBS volume with docker volume create -d rancher-ebs -o size=1', async () => {
    const res = await docker(['volume', 'create', '-d', 'rancher-ebs', '-o', 'size=1', 'rebs-data'], 120_000);
    expect(res.exitCode, res.stderr).toBe(0);
    expect(ebsVolume('rebs-data')).toMatchObject({ sizeGiB: 1, state: 'available', availabilityZone: AZ });
    const info = JSON.parse((await docker(['volume', 'inspect', 'rebs-data'])).stdout)[0];
    expect(info.Driver).toBe('rancher-ebs');
    expect(info.Status).toMatchObject({ volumeId: ebsVolume('rebs-data')?.volumeId });
  });

  it('a container writes to it, a second one reads it; detached in between and after', async () => {
    const w = await runBusybox([
      '-v',
      'rebs-data:/data',
      TEST_IMAGE,
      'sh',
      '-c',
      'echo from-rancher-ebs > /data/f',
    ]);
    expect(w.exitCode, w.stderr).toBe(0);
    const r = await runBusybox(['-v', 'rebs-data:/data', TEST_IMAGE, 'cat', '/data/f']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('from-rancher-ebs');
    const v = ebsVolume('rebs-data')!;
    expect(v.state).toBe('available');
    expect(
      ec2!.calls.filter((c) => c.action === 'AttachVolume' && c.params.VolumeId === v.volumeId),
    ).toHaveLength(2);
    expect(ec2!.maxConcurrentAttachments(v.volumeId)).toBe(1);
    expect(ec2!.errors).toEqual([]);
  });

  it('docker volume rm deletes the EBS volume it created (the default remove policy)', async () => {
    const id = ebsVolume('rebs-data')!.volumeId;
    const res = await docker(['volume', 'rm', 'rebs-data'], 120_000);
    expect(res.exitCode, res.stderr).toBe(0);
    await pollUntil(async () => (ec2!.volume(id)?.state === 'deleted' ? true : undefined), {
      timeoutMs: 10_000,
      initialDelayMs: 20,
      what: `${id} to be deleted`,
    });
    expect(existsSync(join(base!, 'ec2', `${id}.img`))).toBe(false);
  });

  it('docker volume rm keeps an EBS volume created with onRemove=retain', async () => {
    const c = await docker(
      ['volume', 'create', '-d', 'rancher-ebs', '-o', 'size=1', '-o', 'onRemove=retain', 'rebs-kept'],
      120_000,
    );
    expect(c.exitCode, c.stderr).toBe(0);
    const id = ebsVolume('rebs-kept')!.volumeId;
    const res = await docker(['volume', 'rm', 'rebs-kept'], 120_000);
    expect(res.exitCode, res.stderr).toBe(0);
    expect((await docker(['volume', 'ls', '-q'])).stdout.split('\n')).not.toContain('rebs-kept');
    expect(ec2!.calls.some((call) => call.action === 'DeleteVolume' && call.params.VolumeId === id)).toBe(
      false,
    );
    expect(ec2!.volume(id)?.state).toBe('available');
  });

  it('never writes the AWS secret answer to the container log', async () => {
    const logs = await docker(['logs', await containerOf(stack)]);
    expect(`${logs.stdout}\n${logs.stderr}`).not.toContain(AWS_SECRET);
  });
});

// --- rancher-nfs -----------------------------------------------------------------------------------

describe('stowage-nfs catalog stack under docker-compose: rancher-nfs with the Rancher answers', () => {
  let stack: Stack;
  let port: number;
  let exportDir: string;

  beforeAll(async () => {
    await ensureNfsPackages();
    port = await freePort();
    exportDir = join(base!, 'nfs-export');
    ganesha = await startGanesha({ exportDir, port, workDir: join(base!, 'ganesha') });
    stack = await deployStack(
      'nfs',
      {
        NFS_SERVER: '127.0.0.1',
        MOUNT_DIR: ganesha.pseudo,
        MOUNT_OPTS: `port=${port},proto=tcp`,
        NFS_VERS: 'nfsvers=4',
        ON_REMOVE: 'purge',
        RANCHER_DEBUG: 'true',
      },
      {},
    );
  }, 900_000);

  it('comes up from the catalog file and answers on rancher-nfs.sock', async () => {
    expect(stack.rendered.storageDriver).toBe('rancher-nfs');
    expect(stack.socket).toBe(join(PLUGIN_DIR, 'rancher-nfs.sock'));
    const activate = await callPlugin(stack.socket, 'Plugin.Activate');
    expect(activate.body).toMatchObject({ Implements: ['VolumeDriver'] });
    const caps = await callPlugin(stack.socket, 'VolumeDriver.Capabilities');
    expect(caps.body).toMatchObject({ Capabilities: { Scope: expect.any(String) } });
  });

  it('the Rancher answer names reach the config: stowage config --json in the container', async () => {
    const cfg = await stowageIn(stack, ['config', '--json']);
    expect(cfg.exitCode, cfg.stderr).toBe(0);
    const c = JSON.parse(cfg.stdout) as Record<string, unknown>;
    expect(c).toMatchObject({
      drivers: ['nfs'],
      socketPrefix: 'rancher-',
      dataDir: join(sharedDir!, 'rancher-nfs'),
      nfs: {
        server: '127.0.0.1', // NFS_SERVER
        share: '/export', // MOUNT_DIR
        mountOptions: [`port=${port}`, 'proto=tcp'], // MOUNT_OPTS
        nfsVersion: '4', // NFS_VERS=nfsvers=4
        onRemove: 'delete', // ON_REMOVE=purge
      },
      log: { level: 'debug' }, // RANCHER_DEBUG=true
    });
  });

  it('reaches the NFS server the answers name (stowage doctor in the container)', async () => {
    const res = await stowageIn(stack, ['doctor', '--json']);
    const checks = JSON.parse(res.stdout) as { name: string; ok: boolean; detail: string }[];
    expect(checks.find((c) => c.name === 'nfs: server')).toMatchObject({ ok: true });
  });

  /**
   * A volume create cannot succeed on this host: the NFS driver's Create mounts the share root
   * (NFS_SERVER:MOUNT_DIR) with the kernel's NFS client to make the volume's subdirectory, and this
   * kernel has none (no nfs/nfs4 in /proc/filesystems; testbed.md: real NFS mounts happen only in
   * the qemu guest, test/e2e/nfs-kernel-client.test.ts). What a user gets is the mount failure
   * through docker, naming the volume, the server and export the answers gave, and mount.nfs4's
   * own words; nothing is left half-made. Here the host's mount.nfs4 says "No such device" (the
   * kernel); the image's mount.nfs4 currently stops earlier with "Failed to find 'tcp' protocol",
   * because the image has no /etc/protocols (netbase is not installed): an image defect that
   * would break every NFS mount on a real host too. Both end in the message checked here.
   */
  it('docker volume create -d rancher-nfs fails clearly where the kernel has no NFS client', async () => {
    const res = await docker(['volume', 'create', '-d', 'rancher-nfs', 'rnfs-data'], 120_000);
    expect(res.exitCode).not.toBe(0);
    const staging = join(sharedDir!, 'rancher-nfs', 'staging');
    expect(res.stderr).toMatch(
      new RegExp(
        `create rnfs-data: mount of 127\\.0\\.0\\.1:/export on ${escapeRegExp(staging)}/share-[0-9a-f]+ failed \\(exit 32\\): mount\\.nfs4: \\S`,
      ),
    );
    expect((await docker(['volume', 'ls', '-q'])).stdout.split('\n')).not.toContain('rnfs-data');
    // No staging mount point or subdirectory left behind, on the host or on the server.
    expect(await readdir(staging)).toEqual([]);
    expect(await readdir(exportDir)).toEqual([]);
  });
});
