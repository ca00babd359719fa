import { isStowageError, StowageError } from '../src/base/errors.js';
import type { Config } from '../src/config.js';
import { resultCode } from '../src/core/door-requests.js';
import { deviceMountId, podMountId } from '../src/core/mount-ids.js';
import { validateVolumeName } from '../src/core/names.js';
import type { Runtime } from '../src/runtime.js';
import type { FlexDriverTraits } from './capabilities.js';
import { type FlexOptions, isJson, parseFlexOptions } from './options.js';
import { deviceMountPath, podVolumeDir } from './paths.js';
import { type FlexReply, notSupported, success } from './reply.js';
import { openFlexRuntime } from './runtime.js';

export interface CallContext {
  driver: string;
  traits: FlexDriverTraits;
  config: Config;
  installDir?: string;
  /** The process exits right after the reply (see FlexBundle.exitsAfter). */
  exitsAfter?: boolean;
}

type Handler = (
  ctx: CallContext,
  rt: Runtime,
  json: string | undefined,
  rest: string[],
) => Promise<FlexReply>;

/**
 * kubelet's and the controller-manager's calls mapped onto the same VolumeManager the Docker
 * daemon uses: this file only reads arguments and options and words the reply. The volume is
 * mounted once per host and counted per user; kubelet's paths are published (bind mounts of it)
 * under mount ids `pod:<uid>:<dir>` and `device:<name>` (src/core/mount-ids.ts), so neither
 * Docker nor kubelet can unmount the other's users.
 */
const HANDLERS: Record<string, Handler> = {
  attach: async (ctx, rt, json, [nodeName]) => {
    const o = parseFlexOptions(json, ctx.traits);
    const target = await rt.hosts.resolveNode(required(nodeName, 'node name'));
    // A new EBS volume belongs in the node's zone, not in the controller-manager's.
    const zone = target.identity.availabilityZone;
    const zoneGiven = Object.keys(o.driverOptions).some((k) => /zone/i.test(k));
    const extra: Record<string, string> =
      typeof zone === 'string' && !zoneGiven ? { availabilityZone: zone } : {};
    await ensureVolume(ctx, rt, o, extra);
    return success({ device: await rt.manager.attach(ctx.driver, o.name, target) });
  },
  isattached: async (ctx, rt, json, [nodeName]) => {
    const o = parseFlexOptions(json, ctx.traits);
    const target = await rt.hosts.resolveNode(required(nodeName, 'node name'));
    return success({ attached: await rt.manager.isAttached(ctx.driver, o.name, target.host) });
  },
  detach: async (ctx, rt, _json, [volumeName, nodeName]) => {
    const name = validateVolumeName(required(volumeName, 'volume name'));
    const target = await rt.hosts.resolveNode(required(nodeName, 'node name'));
    await rt.manager.detach(ctx.driver, name, target);
    return success();
  },
  waitforattach: async (ctx, rt, json) => {
    const o = parseFlexOptions(json, ctx.traits);
    await nodeSide(ctx, rt, o);
    return success({ device: await rt.manager.attachHere(ctx.driver, o.name) });
  },
  mountdevice: async (ctx, rt, json, [path]) => {
    const o = parseFlexOptions(json, ctx.traits);
    const dmp = deviceMountPath(path, ctx.config.flexvolume.kubeletDir, ctx.driver);
    await publishAt(ctx, rt, o, deviceMountId(dmp.volumeName), dmp.path);
    return success();
  },
  unmountdevice: async (ctx, rt, _json, [path]) => {
    const dmp = deviceMountPath(path, ctx.config.flexvolume.kubeletDir, ctx.driver);
    await rt.manager.unpublish(deviceMountId(dmp.volumeName), dmp.path);
    return success();
  },
  mount: async (ctx, rt, json, [path]) => {
    const o = parseFlexOptions(json, ctx.traits);
    const pod = podVolumeDir(path, ctx.config.flexvolume.kubeletDir, ctx.driver);
    if (o.podUid !== undefined && o.podUid !== pod.podUid) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `pod uid ${o.podUid} in the options does not match the pod directory ${pod.path}`,
      );
    }
    await publishAt(ctx, rt, o, podMountId(pod.podUid, pod.volDir), pod.path);
    return success();
  },
  unmount: async (ctx, rt, _json, [path]) => {
    const pod = podVolumeDir(path, ctx.config.flexvolume.kubeletDir, ctx.driver);
    await rt.manager.unpublish(podMountId(pod.podUid, pod.volDir), pod.path);
    return success();
  },
  // Controller-manager: `expandvolume <json> <deviceMountPath> <newBytes> <oldBytes>`; the
  // storage grows (rounded up by the driver) and the reply says to what.
  expandvolume: async (ctx, rt, json, rest) => {
    const o = parseFlexOptions(json, ctx.traits);
    const { newBytes } = sizeArgs('expandvolume', rest);
    const { sizeBytes } = await rt.manager.expand(ctx.driver, o.name, newBytes);
    return success({ volumeNewSize: sizeBytes });
  },
  // kubelet: `expandfs <json> <devicePath> <deviceMountPath> <newBytes> <oldBytes>`; the
  // filesystem grows on this node once its device shows the new size.
  expandfs: async (ctx, rt, json, rest) => {
    const o = parseFlexOptions(json, ctx.traits);
    const { newBytes } = sizeArgs('expandfs', rest);
    await nodeSide(ctx, rt, o);
    await rt.manager.growFilesystem(ctx.driver, o.name, { minDeviceBytes: newBytes });
    return success();
  },
};

export async function runCall(ctx: CallContext, call: string, args: string[]): Promise<FlexReply> {
  const handler = HANDLERS[call];
  if (!handler) return notSupported(`stowage/${ctx.driver} does not implement ${call}`);
  const jsonAt = args.findIndex(isJson);
  const json = jsonAt >= 0 ? args[jsonAt] : undefined;
  const rest = args.filter((_, i) => i !== jsonAt);
  // kubelet sends a PV's Secret with the node-side calls: its AWS keys are this call's credentials.
  const awsCredentials = json === undefined ? undefined : parseFlexOptions(json, ctx.traits).awsCredentials;
  const rt = await openFlexRuntime(ctx.driver, ctx.config, {
    ...(ctx.installDir ? { dir: ctx.installDir } : {}),
    ...(awsCredentials ? { awsCredentials } : {}),
  });
  let code = 'OK';
  try {
    rt.log.debug({ call, args: rest }, 'flexvolume call');
    const reply = await handler(ctx, rt, json, rest);
    rt.log.info({ call, args: rest, status: reply.status }, 'flexvolume call done');
    return reply;
  } catch (err) {
    code = resultCode(err);
    rt.log.warn({ call, args: rest, err: (err as Error).message }, 'flexvolume call failed');
    throw err;
  } finally {
    await countCall(rt, ctx.driver, call, code);
    await rt.close(ctx.exitsAfter ? { exiting: true } : {});
  }
}

/**
 * The call counted in the store for the daemon's /metrics (door `flexvolume`), once its reply is
 * decided. Its duration runs from the process's start, Node's own included: what kubelet waits
 * for, bar the exit. Never fails the call (DoorRequests.record).
 */
function countCall(rt: Runtime, driver: string, call: string, code: string): Promise<void> {
  return rt.requests.record({
    door: 'flexvolume',
    driver,
    operation: call,
    code,
    seconds: performance.now() / 1000,
  });
}

/** The new and old sizes in bytes: the last two arguments of expandvolume and expandfs. */
function sizeArgs(call: string, rest: string[]): { newBytes: number; oldBytes: number } {
  if (rest.length < 2) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `${call} needs the new and the old size in bytes as its last two arguments`,
    );
  }
  const [newBytes, oldBytes] = rest.slice(-2).map((text, i) => {
    const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `the ${i === 0 ? 'new' : 'old'} size ${JSON.stringify(text)} is not a positive whole number of bytes`,
      );
    }
    return n;
  }) as [number, number];
  if (newBytes < oldBytes) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `the new size ${newBytes} bytes is smaller than the old size ${oldBytes} bytes: volumes only grow`,
    );
  }
  return { newBytes, oldBytes };
}

function required(value: string | undefined, what: string): string {
  if (!value) throw new StowageError('INVALID_ARGUMENT', `the ${what} argument is missing`);
  return value;
}

/**
 * The volume a node-side call works on. Non-attachable volumes are created on first use with the
 * PV's options (as `docker run -v` does). An attachable one must already be recorded by the
 * controller's attach: creating it here, in a store the controller may not share, would make a
 * second cloud disk.
 */
async function nodeSide(ctx: CallContext, rt: Runtime, o: FlexOptions): Promise<void> {
  await rt.hosts.ensureRegistered();
  if (!ctx.traits.attach) {
    await ensureVolume(ctx, rt, o);
    return;
  }
  try {
    await rt.manager.get(ctx.driver, o.name);
  } catch (err) {
    if (!isStowageError(err, 'NOT_FOUND')) throw err;
    throw new StowageError(
      'NOT_FOUND',
      `volume ${o.name} is not in this host's store; the controller-manager's attach records it, so both must share one store (etcd), or create it here first with \`docker volume create -d ${rt.config.socketPrefix}${ctx.driver}\``,
    );
  }
}

/** kubelet's mount steps: the volume made ready on this node, then shown at kubelet's path. */
async function publishAt(ctx: CallContext, rt: Runtime, o: FlexOptions, id: string, target: string) {
  await nodeSide(ctx, rt, o);
  await rt.manager.publish({ driver: ctx.driver, volume: o.name, id, target, readOnly: o.readOnly });
}

async function ensureVolume(
  ctx: CallContext,
  rt: Runtime,
  o: FlexOptions,
  whenNew: Record<string, string> = {},
): Promise<void> {
  let exists = true;
  try {
    await rt.manager.get(ctx.driver, o.name);
  } catch (err) {
    if (!isStowageError(err, 'NOT_FOUND')) throw err;
    exists = false;
  }
  await rt.manager.create(ctx.driver, o.name, exists ? o.driverOptions : { ...whenNew, ...o.driverOptions });
}
