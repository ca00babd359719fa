import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, expect } from 'vitest';
import type { Ec2Api } from '../../src/cloud/ec2.js';
import { SdkEc2Network } from '../../src/cloud/ec2-network.js';
import { SdkEfs } from '../../src/cloud/efs.js';
import { type InstanceIdentity, StaticIdentity } from '../../src/cloud/imds.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { MountOptions } from '../../src/mount/mounter.js';
import { builtinRegistry, createRuntime, type Runtime } from '../../src/runtime.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { FakeEfs } from '../fakes/aws/efs-endpoint.js';
import { FakeFileOps } from '../fakes/fake-file-ops.js';
import { FakeLoopDevices } from '../fakes/fake-loop.js';
import { FakeMounter } from '../fakes/fake-mounter.js';
import { fakeEndpointOptions } from '../helpers/aws-sdk.js';
import { forbidden } from '../helpers/forbidden.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js';

/**
 * The efs driver's test composition: the real config, store, locks and VolumeManager over the fake
 * kernel, and the real AWS SDK against the fake EFS and EC2 endpoints, which share one network
 * model (subnets in zones and VPCs, security groups). The mount target's address is a fake NFS
 * server (FakeMounter.nfsServers) whose root is a local directory standing in for the file
 * system's root.
 */

export const FS = 'fs-0123456789abcdef0';
/** One subnet per zone of the default VPC, each with the address its mount targets get. */
export const SUBNET_A = 'subnet-0aaaaaaaaaaaaaaa1';
export const SUBNET_B = 'subnet-0bbbbbbbbbbbbbbb2';
export const SUBNET_C = 'subnet-0ccccccccccccccc3';
/** A second subnet in us-east-1a, and one in another VPC. */
export const SUBNET_A2 = 'subnet-0aaaaaaaaaaaaaaa2';
export const SUBNET_OTHER_VPC = 'subnet-0dddddddddddddd4';
export const OTHER_VPC = 'vpc-0000000000000b0b0';
export const IP_A = '10.1.0.5';
export const IP_B = '10.1.1.5';
export const IP_C = '10.1.2.5';
/** A security group of the default VPC. */
export const SG = 'sg-0123456789abcdef0';
export const AWS = { instanceId: 'i-0123456789abcdef0', availabilityZone: 'us-east-1a', region: 'us-east-1' };

/**
 * The fake kernel, also able to run `mount -t efs` (the EFS mount helper): it mounts the file
 * system through the address in mounttargetip=, as the helper does.
 */
export class EfsAwareMounter extends FakeMounter {
  override async mount(source: string, target: string, opts: MountOptions = {}): Promise<void> {
    if (opts.fsType !== 'efs') return super.mount(source, target, opts);
    this.calls.push({ op: 'mount', path: target, detail: { source, ...opts } });
    const ip = (opts.options ?? [])
      .find((o) => o.startsWith('mounttargetip='))
      ?.slice('mounttargetip='.length);
    if (!ip || !this.nfsServers.has(ip)) throw new Error(`fake mount.efs: no mount target at ${ip}`);
    this.table.set(target, { source, fsType: 'efs', options: [...(opts.options ?? [])] });
  }
}

// --- the runtime -----------------------------------------------------------------------------

export interface Logged {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface EfsRuntime {
  dir: string;
  config: Config;
  runtime: Runtime;
  store: SqliteStore;
  mounter: EfsAwareMounter;
  /** The fake EFS endpoint (state, request log, failure injection). */
  efs: FakeEfs;
  /** The driver's EFS seam: the real SDK client talking to `efs`. */
  sdk: SdkEfs;
  /** The EFS file system root as the fake NFS server at IP_A serves it. */
  root: string;
  /** The daemon's log lines (info and above). */
  logged: Logged[];
  cleanup(): Promise<void>;
}

export interface SetupOptions {
  efs?: Record<string, unknown>;
  identity?: Partial<InstanceIdentity>;
  /** false: no EC2 look-ups, so only EFS itself refuses a bad subnet or security group. */
  network?: boolean;
  /** The file system FS exists, with an available mount target in each of these subnets. */
  fileSystem?: string[];
}

/** States the file system FS with an available mount target in each of `subnets`. */
export function addFs(r: EfsRuntime, subnets: string[] = []): void {
  r.efs.addFileSystem({ fileSystemId: FS, mountTargets: subnets.map((subnetId) => ({ subnetId })) });
}

/** An access point made outside stowage (by someone with the same account), on its own client token. */
export function outsideAccessPoint(
  r: EfsRuntime,
  fileSystemId: string,
  path: string,
  clientToken = `outside-${path}`,
): Promise<{ id: string }> {
  return r.sdk.createAccessPoint({
    clientToken,
    fileSystemId,
    path,
    uid: 0,
    gid: 0,
    permissions: '755',
    tags: {},
  });
}

/**
 * For a whole test file: the returned setup() gives a fresh runtime over fresh endpoints (cleaning
 * up the one an earlier setup() of the same test made), and each test's is cleaned up after it.
 */
export function useEfsRuntime(): (o?: SetupOptions) => Promise<EfsRuntime> {
  let current: EfsRuntime | undefined;
  afterEach(async () => {
    const r = current;
    current = undefined;
    await r?.cleanup();
  });
  return async (o = {}) => {
    const previous = current;
    current = undefined;
    await previous?.cleanup();
    current = await setupEfs(o);
    return current;
  };
}

/**
 * createTestRuntime's composition (real config, store, locks, manager; fake kernel), plus the
 * cloud seams, which createTestRuntime cannot take. The SDK needs AWS credentials in the
 * environment (stubbed by the test file).
 */
export async function setupEfs(o: SetupOptions = {}): Promise<EfsRuntime> {
  const dir = await makeTempDir('efs');
  const file = join(dir, 'config.yaml');
  await writeFile(file, '');
  const config = loadConfig({
    file,
    env: {},
    flags: {
      dataDir: join(dir, 'data'),
      hostId: 'test-host',
      socketDir: join(dir, 'plugins'),
      drivers: ['efs'],
      aws: AWS,
      efs: { fileSystemId: FS, ...o.efs },
    },
  });
  const mounter = new EfsAwareMounter();
  const loop = new FakeLoopDevices(mounter);
  const files = new FakeFileOps(mounter);
  const store = new SqliteStore(config.state);
  const ec2 = await FakeEc2.start({ stateDelayMs: 0 });
  const efs = await FakeEfs.start({ stateDelayMs: 0, network: ec2.network });
  ec2.network.addSubnet({ subnetId: SUBNET_A, availabilityZone: 'us-east-1a', ip: IP_A });
  ec2.network.addSubnet({ subnetId: SUBNET_B, availabilityZone: 'us-east-1b', ip: IP_B });
  ec2.network.addSubnet({ subnetId: SUBNET_C, availabilityZone: 'us-east-1c', ip: IP_C });
  ec2.network.addSubnet({ subnetId: SUBNET_A2, availabilityZone: 'us-east-1a' });
  ec2.network.addSubnet({ subnetId: SUBNET_OTHER_VPC, availabilityZone: 'us-east-1c', vpcId: OTHER_VPC });
  ec2.network.addSecurityGroup({ groupId: SG });
  const sdk = new SdkEfs(fakeEndpointOptions(efs.url));
  const ec2Api = forbidden<Ec2Api>('the efs driver must not call EC2');
  const logged: Logged[] = [];
  const root = join(dir, 'efs-root');
  await mkdir(root, { recursive: true });
  mounter.nfsServers.set(IP_A, root);
  const runtime = createRuntime(config, {
    mounter,
    loop,
    files,
    probeTcp: async (host) => ({ ok: mounter.nfsServers.has(host), detail: 'fake probe' }),
    store,
    registry: await builtinRegistry(),
    log: pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line) as Logged) }),
    cloud: {
      ec2: ec2Api,
      efs: sdk,
      ...(o.network === false ? {} : { network: new SdkEc2Network(fakeEndpointOptions(ec2.url)) }),
      identity: new StaticIdentity({ ...AWS, subnetId: SUBNET_A, ...o.identity }),
    },
  });
  const r: EfsRuntime = {
    dir,
    config,
    runtime,
    store,
    mounter,
    efs,
    sdk,
    root,
    logged,
    cleanup: async () => {
      await runtime.close();
      await efs.stop();
      await ec2.stop();
      await removeTempDir(dir);
      expect([...efs.errors, ...ec2.errors]).toEqual([]);
      expect(ec2Api.calls).toEqual([]);
    },
  };
  if (o.fileSystem) addFs(r, o.fileSystem);
  return r;
}
