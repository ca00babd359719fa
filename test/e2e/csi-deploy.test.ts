import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socketPathOf } from '../../csi/endpoint.js';
import { DRIVER_NAMES } from '../../drivers/catalog.js';
import { pollUntil } from '../../src/base/backoff.js';
import { type CsiClient, csiClient } from '../csi/client.js';
import {
  argValue,
  csiBundles,
  type Doc,
  isStowage,
  sidecarOf,
  stowageArgv,
  VERSION,
  type Workload,
  workloads,
} from '../deploy/csi-manifests.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { FakeEfs } from '../fakes/aws/efs-endpoint.js';
import { FakeImds } from '../fakes/aws/imds.js';
import { within } from '../helpers/deadline.js';

/**
 * Each stowage container of deploy/kubernetes/csi, run for real as its manifest says: the compiled
 * CLI with the container's own argv and the ConfigMap's config.yaml as the file it reads. Only
 * what a test host must change is changed: the store (a SQLite file here instead of the cluster's
 * etcd, given as --state, which overrides the file), the data dir, the socket's directory and
 * kubelet's directory (temp dirs with the manifest's socket name kept), and the AWS endpoints
 * (the suite's EC2, EFS and instance metadata). Then a CSI client asks what kubelet and the
 * sidecars ask first, and checks the answers against the manifests: the plugin's name is the
 * CSIDriver's, topology is advertised exactly when the provisioner runs with Topology=true, the
 * mode serves the services the workload's sidecars call, and the node's host id is the one the
 * DaemonSet sets.
 */
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'stowage.js');
const NODE_NAME = 'csi-deploy-node-1';
const REGION = 'eu-west-1';
const AZ = 'eu-west-1a';
const INSTANCE = 'i-0c5100000000000d1';

const bundles = csiBundles();
let base: string;
let ec2: FakeEc2 | undefined;
let efs: FakeEfs | undefined;
let imds: FakeImds | undefined;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-csi-deploy-'));
  ec2 = await FakeEc2.start({ region: REGION });
  ec2.addInstance({ instanceId: INSTANCE, availabilityZone: AZ, usedDevices: ['/dev/xvda'] });
  efs = await FakeEfs.start();
  imds = await FakeImds.start({ instanceId: INSTANCE, availabilityZone: AZ, region: REGION });
});

afterAll(async () => {
  await ec2?.stop();
  await efs?.stop();
  await imds?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

/** The environment the manifest gives the container: literal values and the node's name. */
function manifestEnv(c: Doc): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of (c.env ?? []) as Doc[]) {
    if (typeof e.value === 'string') env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') env[e.name] = NODE_NAME;
  }
  return env;
}

interface Running {
  proc: ResultPromise;
  socket: string;
  state: string;
  dir: string;
}

/** Starts the workload's stowage container as its manifest says, on this host's temp dirs. */
async function runContainer(driver: string, w: Workload): Promise<Running> {
  const c = w.containers.find(isStowage)!;
  const dir = join(base, w.name);
  const argv = stowageArgv(c);
  // The ConfigMap behind --config, written where this run reads it.
  const configPath = argValue(argv.globals, '--config')!;
  const volume = c.volumeMounts.find((m: Doc) => configPath.startsWith(`${m.mountPath}/`));
  const cm = bundles[driver as keyof typeof bundles].find(
    (d) =>
      d.kind === 'ConfigMap' &&
      d.metadata.name === w.pod.volumes.find((v: Doc) => v.name === volume.name).configMap.name,
  )!;
  const configFile = join(dir, 'config.yaml');
  await mkdir(dir, { recursive: true });
  await writeFile(configFile, cm.data[configPath.slice(volume.mountPath.length + 1)]);
  const state = join(dir, 'state.db');
  const globals = argv.globals.map((a, i) => (argv.globals[i - 1] === '--config' ? configFile : a));
  const socket = join(dir, socketPathOf(argValue(argv.flags, '--endpoint')!));
  const kubeletDir = join(dir, 'kubelet');
  await mkdir(kubeletDir, { recursive: true });
  const flags = argv.flags.map((a, i) => {
    if (argv.flags[i - 1] === '--endpoint') return `unix://${socket}`;
    if (argv.flags[i - 1] === '--kubelet-dir') return kubeletDir;
    return a;
  });
  const proc = execa(
    'node',
    [
      '--no-warnings',
      BIN,
      ...globals,
      '--state',
      state,
      '--data-dir',
      join(dir, 'data'),
      '--log-level',
      'debug',
      '--log-file',
      join(dir, 'stowage.log'),
      argv.command,
      ...flags,
    ],
    {
      reject: false,
      stdin: 'ignore',
      all: true,
      env: {
        ...manifestEnv(c),
        AWS_REGION: REGION,
        AWS_ACCESS_KEY_ID: 'AKIDCSIDEPLOYTEST',
        AWS_SECRET_ACCESS_KEY: 'csi-deploy-secret-for-tests-only',
        STOWAGE_EBS_ENDPOINT: ec2!.url,
        STOWAGE_EFS_ENDPOINT: efs!.url,
        STOWAGE_AWS_IMDS_ENDPOINT: imds!.url,
      },
    },
  );
  const served = await pollUntil(
    async () => (existsSync(socket) || proc.exitCode !== null ? true : undefined),
    { timeoutMs: 20_000, what: `the socket ${socket}` },
  ).catch(() => false);
  if (!served || proc.exitCode !== null) {
    proc.kill('SIGKILL');
    const out = await proc;
    throw new Error(`${w.name}: stowage did not serve ${socket}:\n${out.all}`);
  }
  return { proc, socket, state, dir };
}

async function stop(r: Running): Promise<number | undefined> {
  r.proc.kill('SIGTERM');
  const done = await within(r.proc, 25_000);
  if (done === undefined) {
    r.proc.kill('SIGKILL');
    await r.proc;
  }
  return done?.exitCode;
}

async function codeOf(p: Promise<unknown>): Promise<number> {
  return p.then(
    () => status.OK,
    (err: { code: number }) => err.code,
  );
}

describe.each(DRIVER_NAMES)('the %s manifests, run', (driver) => {
  const all = bundles[driver];
  const csiDriver = all.find((d) => d.kind === 'CSIDriver')!;
  const topologyGate = workloads(all)
    .flatMap((w) => w.containers)
    .some((c) => sidecarOf(c) === 'csi-provisioner' && c.args.includes('--feature-gates=Topology=true'));

  describe.each(workloads(all).map((w) => [`${w.kind} ${w.name}`, w] as const))('%s', (_, w) => {
    it('serves the CSIDriver name, topology as the provisioner expects, the services its sidecars call; stops on SIGTERM', {
      timeout: 90_000,
    }, async () => {
      const mode = argValue(stowageArgv(w.containers.find(isStowage)!).flags, '--mode');
      const r = await runContainer(driver, w);
      let client: CsiClient | undefined;
      try {
        client = csiClient(r.socket);
        const info = await client.call('Identity', 'GetPluginInfo', {});
        expect(info.name).toBe(csiDriver.metadata.name);
        expect(info.vendorVersion).toBe(VERSION);
        const caps = await client.call('Identity', 'GetPluginCapabilities', {});
        const services = (caps.capabilities ?? []).map((x: Doc) => x.service?.type).filter(Boolean);
        expect(services).toContain('CONTROLLER_SERVICE');
        expect(services.includes('VOLUME_ACCESSIBILITY_CONSTRAINTS')).toBe(topologyGate);
        // Ready once the node role has registered the host and reconciled.
        await pollUntil(
          async () =>
            (await client!.call('Identity', 'Probe', {})).ready?.value === true ? true : undefined,
          { timeoutMs: 20_000, what: 'Probe to answer ready' },
        );
        // The Deployment's sidecars call the Controller service; a node-only plugin has none.
        expect(await codeOf(client.call('Controller', 'ControllerGetCapabilities', {}))).toBe(
          mode === 'node' ? status.UNIMPLEMENTED : status.OK,
        );
      } finally {
        client?.close();
      }
      expect(await stop(r)).toBe(0);
      expect(existsSync(r.socket), 'the socket is removed at shutdown').toBe(false);
      if (w.kind === 'DaemonSet') {
        // node_id = the store's host id = the node's name, from the DaemonSet's STOWAGE_HOST_ID.
        const hosts = await execa(
          'node',
          ['--no-warnings', BIN, '--config', '/dev/null', '--state', r.state, 'hosts', 'ls', '--json'],
          { reject: false, timeout: 30_000 },
        );
        expect(hosts.exitCode, hosts.stderr).toBe(0);
        const ids = (JSON.parse(hosts.stdout) as { id: string }[]).map((h) => h.id);
        expect(ids).toEqual([NODE_NAME]);
      }
      await rm(r.dir, { recursive: true, force: true });
    });
  });
});
