import { StowageError } from '../base/errors.js';
import { nodeCrypto } from '../base/node-crypto.js';

/**
 * Mount ids: who a mount of a volume on a host is counted for, as the keys of a mount record's
 * refs. Docker gives its own (64 hex characters per container mount); kubelet's users are named
 * here, and only here, so that the code that asks "is this a pod?" and the code that makes the id
 * cannot drift apart:
 *   pod:<pod uid>:<volume directory>  a pod's bind mount (the directory tells apart two volumes of one pod)
 *   device:<volume name>              kubelet's per-node mount of an attached volume (no pod behind it)
 *   stage:<digest of the path>        a CSI NodeStage at a staging path (no pod behind it either)
 *   csi:<digest of the path>          a CSI NodePublish at a target path that names no pod
 * A CSI NodePublish at kubelet's usual target (…/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount)
 * is counted as that pod's, `pod:<uid>:csi_<pv>` (a PV name has no `_`, so it never meets a flexvolume id), so "in use by pod …" names it either way.
 */

const MOUNT_ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
const MAX = 128;
const POD = 'pod:';
const DEVICE = 'device:';
const STAGE = 'stage:';
const CSI = 'csi:';
/** kubelet's target path for a CSI volume of a pod (mount access type). */
const CSI_POD_TARGET = /\/pods\/([0-9a-fA-F-]{1,64})\/volumes\/kubernetes\.io~csi\/([^/]{1,253})\/mount$/;

export function validateMountId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || !MOUNT_ID_RE.test(id)) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `invalid mount ID ${JSON.stringify(id)}: expected 1-128 characters [A-Za-z0-9_.:-]`,
    );
  }
}

/** A pod's id; the directory part is hashed when both would not fit the 128-character id. */
export function podMountId(podUid: string, volDir: string): string {
  const id = `${POD}${podUid}:${volDir}`;
  return id.length <= MAX ? id : `${POD}${podUid}:${digest(volDir)}`;
}

/** kubelet's device mount of a volume; the name is hashed when it would not fit. */
export function deviceMountId(volumeName: string): string {
  const id = `${DEVICE}${volumeName}`;
  return id.length <= MAX ? id : `${DEVICE}${digest(volumeName)}`;
}

/**
 * A CSI NodeStage's id: one per staging path, so that a flexvolume device mount and a CSI stage of
 * one volume on one host (or two COs staging it) are counted apart and never release each other.
 */
export function stageMountId(stagingPath: string): string {
  return `${STAGE}${digest(stagingPath)}`;
}

/** A CSI NodePublish's id: the pod's when kubelet's target path names it, else one per path. */
export function csiPublishMountId(targetPath: string): string {
  const pod = CSI_POD_TARGET.exec(targetPath);
  if (pod) return podMountId(pod[1] as string, `csi_${pod[2] as string}`);
  return `${CSI}${digest(targetPath)}`;
}

/** Mount ids of per-node mounts (kubelet's device mounts, CSI stages): no pod or container behind them. */
export function isDeviceRef(id: string): boolean {
  return id.startsWith(DEVICE) || id.startsWith(STAGE);
}

/** Mount ids of a pod's (or a CSI target's) bind mount: a workload of kubelet's, not Docker's. */
export function isPublishRef(id: string): boolean {
  return id.startsWith(POD) || id.startsWith(CSI);
}

/** The pod uid of a pod's mount id, else undefined. */
export function podOf(id: string): string | undefined {
  return id.startsWith(POD) ? id.slice(POD.length).split(':')[0] : undefined;
}

/** "pod <uid>" and "2 Docker mounts": who the refs of this host stand for, kubelet's devices aside. */
export function describeUsers(ids: string[]): string {
  const pods = [...new Set(ids.map(podOf).filter((p): p is string => p !== undefined))];
  const csi = ids.filter((id) => id.startsWith(CSI)).length;
  const others = ids.filter((id) => podOf(id) === undefined && !id.startsWith(CSI)).length;
  const parts: string[] = [];
  if (pods.length > 0) parts.push(`pod${pods.length === 1 ? '' : 's'} ${pods.join(', ')}`);
  if (csi > 0) parts.push(`${csi} CSI publish${csi === 1 ? '' : 'es'}`);
  if (others > 0) parts.push(`${others} Docker mount${others === 1 ? '' : 's'}`);
  return parts.join(' and ');
}

function digest(text: string): string {
  return nodeCrypto().createHash('sha256').update(text).digest('hex').slice(0, 32);
}
