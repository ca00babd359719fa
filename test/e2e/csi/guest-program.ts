/**
 * Runs inside the qemu guest for test/e2e/csi-nfs-guest.test.ts, as kubelet and the CSI sidecars
 * on a node: it starts the stowage CSI plugin (the bundled guest-server, `--mode all`) for each
 * driver, drives it over its unix socket with a grpc-js client built from our csi.proto in the
 * order external-provisioner and kubelet do, repeats every call (idempotency), kills the plugin
 * with SIGKILL twice in the middle and starts it again, and records every reply, the mount table
 * at each point and what the pods' targets let it read and write. The kernel NFS client mounts
 * ganesha on the host (10.0.2.2). The host test judges; this program only observes.
 *
 * argv: <plan.json>. Prints one `RESULT {json}` line (CsiGuestReport).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { type Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type FsOutcome, fsTry, type MountView, ourMounts as ourMountsIn } from '../guest/mount-view.js';

export type { FsOutcome, MountView } from '../guest/mount-view.js';

export interface CsiDriverPlan {
  driver: 'nfs' | 'efs';
  /** The CreateVolume name (external-provisioner's pvc-<uid>). */
  name: string;
  parameters: Record<string, string>;
}

export interface CsiGuestPlan {
  serverBundle: string;
  protoPath: string;
  kubeletDir: string;
  dataDir: string;
  socketDir: string;
  logFile: string;
  env: Record<string, string>;
  podA: string;
  podB: string;
  drivers: CsiDriverPlan[];
}

/** One RPC's outcome: the reply, or the gRPC status code and message. */
export interface RpcRecord {
  method: string;
  ok: boolean;
  code?: number;
  details?: string;
  reply?: Record<string, unknown>;
  ms: number;
}

export interface CsiDriverReport {
  driver: string;
  volumeId?: string;
  staging: string;
  targetA: string;
  targetB: string;
  calls: Record<string, RpcRecord>;
  mountsStaged: MountView[];
  mountsWhileBoth: MountView[];
  mountsAfterUnpublishA: MountView[];
  mountsAtEnd: MountView[];
  writeA: FsOutcome;
  readB: FsOutcome;
  writeB: FsOutcome;
  readBAfterRestart: FsOutcome;
  targetAExistsAfterUnpublish: boolean;
  restarts: number[];
}

export interface CsiGuestReport {
  drivers: CsiDriverReport[];
  error?: string;
  logTail: string;
  ms: number;
}

const planPath = process.argv[2];
if (!planPath) throw new Error('usage: csi-guest-program <plan.json>');
const plan = JSON.parse(readFileSync(planPath, 'utf8')) as CsiGuestPlan;
const started = Date.now();

const pkgDef = protoLoader.loadSync(plan.protoPath, {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const v1 = (grpc.loadPackageDefinition(pkgDef).csi as grpc.GrpcObject).v1 as Record<
  string,
  new (
    address: string,
    creds: grpc.ChannelCredentials,
  ) => Client
>;

type Unary = (
  req: unknown,
  meta: Metadata,
  opts: { deadline: Date },
  cb: (err: ServiceError | null, res: Record<string, unknown>) => void,
) => void;

class Plugin {
  private child: ChildProcess | undefined;
  private clients: Record<string, Client> = {};
  readonly restarts: number[] = [];

  constructor(
    readonly driver: string,
    readonly socket: string,
  ) {}

  async start(): Promise<number> {
    const t0 = Date.now();
    this.child = spawn(
      process.execPath,
      [plan.serverBundle, this.driver, `unix://${this.socket}`, plan.kubeletDir],
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...plan.env } },
    );
    const address = `unix:${this.socket}`;
    for (const s of ['Identity', 'Controller', 'Node']) {
      this.clients[s]?.close();
      const Ctor = v1[s];
      if (!Ctor) throw new Error(`no service ${s} in the proto`);
      this.clients[s] = new Ctor(address, credentials.createInsecure());
    }
    // Ready when Probe says so (the node side registers and reconciles first).
    for (let i = 0; i < 600; i++) {
      if (existsSync(this.socket)) {
        const probe = await this.rpc('Identity', 'Probe', {}, 2000);
        if (probe.ok && (probe.reply?.ready as { value?: boolean } | null)?.value !== false) break;
      }
      await sleep(100);
    }
    return Date.now() - t0;
  }

  /** SIGKILL, as a node losing its plugin container would, then a new process. */
  async crashAndRestart(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await gone;
    }
    this.restarts.push(await this.start());
  }

  async stop(): Promise<void> {
    const child = this.child;
    for (const c of Object.values(this.clients)) c.close();
    if (child && child.exitCode === null) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([gone, sleep(20_000)]);
    }
  }

  rpc(
    service: string,
    method: string,
    req: Record<string, unknown>,
    deadlineMs = 120_000,
  ): Promise<RpcRecord> {
    const t0 = Date.now();
    const client = this.clients[service] as unknown as Record<string, Unary>;
    const fn = client[method];
    if (!fn) throw new Error(`no method ${service}.${method}`);
    return new Promise((resolve) => {
      fn.call(client, req, new Metadata(), { deadline: new Date(Date.now() + deadlineMs) }, (err, res) => {
        const ms = Date.now() - t0;
        resolve(
          err
            ? { method, ok: false, code: err.code, details: err.details, ms }
            : { method, ok: true, reply: res, ms },
        );
      });
    });
  }
}

function ourMounts(): MountView[] {
  return ourMountsIn(plan.kubeletDir, plan.dataDir);
}

const capability = (mode: string) => ({ mount: { fsType: '', mountFlags: [] }, accessMode: { mode } });

async function drive(d: CsiDriverPlan): Promise<CsiDriverReport> {
  const plugin = new Plugin(d.driver, join(plan.socketDir, `${d.driver}.sock`));
  mkdirSync(plan.socketDir, { recursive: true });
  const pluginName = `${d.driver}.csi.stowage.io`;
  const staging = join(plan.kubeletDir, 'plugins/kubernetes.io/csi', pluginName, 'a1b2c3/globalmount');
  const targetOf = (pod: string) =>
    join(plan.kubeletDir, 'pods', pod, 'volumes/kubernetes.io~csi', d.name, 'mount');
  const targetA = targetOf(plan.podA);
  const targetB = targetOf(plan.podB);
  const calls: Record<string, RpcRecord> = {};
  const rw = capability('MULTI_NODE_MULTI_WRITER');
  const ro = capability('MULTI_NODE_READER_ONLY');
  const report: Partial<CsiDriverReport> = { driver: d.driver, staging, targetA, targetB, calls };
  try {
    await plugin.start();
    calls.info = await plugin.rpc('Identity', 'GetPluginInfo', {});
    calls.nodeInfo = await plugin.rpc('Node', 'NodeGetInfo', {});
    calls.nodeCaps = await plugin.rpc('Node', 'NodeGetCapabilities', {});
    calls.controllerCaps = await plugin.rpc('Controller', 'ControllerGetCapabilities', {});

    // external-provisioner: CreateVolume, and again after a lost reply.
    const create = { name: d.name, volumeCapabilities: [rw], parameters: d.parameters };
    calls.create = await plugin.rpc('Controller', 'CreateVolume', create);
    calls.createAgain = await plugin.rpc('Controller', 'CreateVolume', create);
    calls.createOther = await plugin.rpc('Controller', 'CreateVolume', {
      ...create,
      parameters: { ...d.parameters, mountTimeout: '7s' },
    });
    const volumeId = (calls.create.reply?.volume as { volumeId?: string } | undefined)?.volumeId ?? '';
    report.volumeId = volumeId;
    const context = (calls.create.reply?.volume as { volumeContext?: Record<string, string> } | undefined)
      ?.volumeContext;

    // kubelet: stage once per node (the CO makes the staging directory), retried.
    mkdirSync(staging, { recursive: true, mode: 0o750 });
    const stage = {
      volumeId,
      stagingTargetPath: staging,
      volumeCapability: rw,
      volumeContext: context ?? {},
    };
    calls.stage = await plugin.rpc('Node', 'NodeStageVolume', stage);
    calls.stageAgain = await plugin.rpc('Node', 'NodeStageVolume', stage);
    report.mountsStaged = ourMounts();

    await plugin.crashAndRestart(); // between stage and publish

    // kubelet makes the target's parent; the plugin makes the target.
    mkdirSync(join(targetA, '..'), { recursive: true, mode: 0o750 });
    mkdirSync(join(targetB, '..'), { recursive: true, mode: 0o750 });
    const publishA = {
      volumeId,
      stagingTargetPath: staging,
      targetPath: targetA,
      volumeCapability: rw,
      readonly: false,
      volumeContext: context ?? {},
    };
    calls.publishA = await plugin.rpc('Node', 'NodePublishVolume', publishA);
    calls.publishAAgain = await plugin.rpc('Node', 'NodePublishVolume', publishA);
    report.writeA = fsTry(() => {
      writeFileSync(join(targetA, 'hello.txt'), `written by pod A through ${pluginName}\n`);
      return undefined;
    });
    calls.publishB = await plugin.rpc('Node', 'NodePublishVolume', {
      ...publishA,
      targetPath: targetB,
      volumeCapability: ro,
      readonly: true,
    });
    report.mountsWhileBoth = ourMounts();
    report.readB = fsTry(() => readFileSync(join(targetB, 'hello.txt'), 'utf8'));
    report.writeB = fsTry(() => {
      writeFileSync(join(targetB, 'from-b.txt'), 'pod B must not be able to write this\n');
      return undefined;
    });
    calls.statsA = await plugin.rpc('Node', 'NodeGetVolumeStats', { volumeId, volumePath: targetA });

    // The spec's negative cases: each its code, nothing changed.
    calls.publishOutside = await plugin.rpc('Node', 'NodePublishVolume', {
      ...publishA,
      targetPath: '/tmp/elsewhere',
    });
    calls.stageUnknown = await plugin.rpc('Node', 'NodeStageVolume', {
      ...stage,
      volumeId: 'pvc-does-not-exist',
    });
    calls.stageNoCapability = await plugin.rpc('Node', 'NodeStageVolume', {
      ...stage,
      volumeCapability: null,
    });
    calls.publishNoVolumeId = await plugin.rpc('Node', 'NodePublishVolume', { ...publishA, volumeId: '' });

    calls.unpublishA = await plugin.rpc('Node', 'NodeUnpublishVolume', { volumeId, targetPath: targetA });
    calls.unpublishAAgain = await plugin.rpc('Node', 'NodeUnpublishVolume', {
      volumeId,
      targetPath: targetA,
    });
    report.targetAExistsAfterUnpublish = existsSync(targetA);
    report.mountsAfterUnpublishA = ourMounts();

    await plugin.crashAndRestart(); // with pod B still using the volume
    report.readBAfterRestart = fsTry(() => readFileSync(join(targetB, 'hello.txt'), 'utf8'));

    calls.unpublishB = await plugin.rpc('Node', 'NodeUnpublishVolume', { volumeId, targetPath: targetB });
    calls.unstage = await plugin.rpc('Node', 'NodeUnstageVolume', { volumeId, stagingTargetPath: staging });
    calls.unstageAgain = await plugin.rpc('Node', 'NodeUnstageVolume', {
      volumeId,
      stagingTargetPath: staging,
    });
    calls.delete = await plugin.rpc('Controller', 'DeleteVolume', { volumeId });
    calls.deleteAgain = await plugin.rpc('Controller', 'DeleteVolume', { volumeId });
    report.mountsAtEnd = ourMounts();
  } finally {
    report.restarts = plugin.restarts;
    await plugin.stop();
  }
  return report as CsiDriverReport;
}

const result: CsiGuestReport = { drivers: [], logTail: '', ms: 0 };
try {
  for (const d of plan.drivers) result.drivers.push(await drive(d));
} catch (err) {
  result.error = (err as Error).stack ?? String(err);
}
try {
  result.logTail = readFileSync(plan.logFile, 'utf8').split('\n').slice(-40).join('\n');
} catch {
  result.logTail = '(no log file)';
}
result.ms = Date.now() - started;
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
