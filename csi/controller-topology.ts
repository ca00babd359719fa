import { status } from '@grpc/grpc-js';
import { TOPOLOGY_HOST, TOPOLOGY_ZONE } from './context.js';
import { csiError } from './handler.js';
import type { TopologyOut, TopologyRequirement } from './proto/messages.js';

/**
 * Where a zonal volume (ebs) is made, from CreateVolume's accessibility_requirements: the zone of
 * the first preferred topology, else of the first requisite one (external-provisioner puts the
 * selected node's zone first). A zone given as a parameter wins, but must be one the requisite
 * topologies allow, else RESOURCE_EXHAUSTED (the spec's "cannot provision in that topology").
 * Undefined: nothing asks for a zone, and the driver's default (this host's zone) applies.
 */
export function zoneFor(
  req: TopologyRequirement | null,
  parameterZone: string | undefined,
): string | undefined {
  const zones = (ts: { segments: Record<string, string> }[] | undefined) =>
    (ts ?? [])
      .map((t) => t.segments[TOPOLOGY_ZONE])
      .filter((z): z is string => typeof z === 'string' && z !== '');
  const requisite = zones(req?.requisite);
  const preferred = zones(req?.preferred);
  if (parameterZone !== undefined) {
    if (requisite.length > 0 && !requisite.includes(parameterZone)) {
      throw csiError(
        status.RESOURCE_EXHAUSTED,
        'INVALID_ARGUMENT',
        `parameter availabilityZone=${parameterZone} is not among the zones the volume must be reachable from (${requisite.join(', ')}): drop the parameter or let the StorageClass allow that zone`,
      );
    }
    return undefined;
  }
  return preferred[0] ?? requisite[0];
}

/**
 * A host-local volume (local) is made on the host that runs this controller, so a requisite
 * topology must name this host: otherwise RESOURCE_EXHAUSTED, which makes external-provisioner
 * (with --node-deployment and WaitForFirstConsumer) let the scheduler choose again.
 */
export function requireThisHost(req: TopologyRequirement | null, nodeId: string): void {
  const hosts = (req?.requisite ?? [])
    .map((t) => t.segments[TOPOLOGY_HOST])
    .filter((h): h is string => typeof h === 'string' && h !== '');
  if (hosts.length > 0 && !hosts.includes(nodeId)) {
    throw csiError(
      status.RESOURCE_EXHAUSTED,
      'INVALID_ARGUMENT',
      `local volumes are made on the host that asks for them (${nodeId}), and the volume must be reachable from ${hosts.join(', ')}: run the provisioner on every node (external-provisioner --node-deployment) with a WaitForFirstConsumer StorageClass`,
    );
  }
}

/** The topology a volume is reachable from, for CreateVolume's reply and ListVolumes. */
export function volumeTopology(
  traits: { zonal: boolean; hostLocal: boolean },
  facts: { availabilityZone?: unknown },
  nodeId: string,
): TopologyOut[] {
  if (traits.hostLocal) return [{ segments: { [TOPOLOGY_HOST]: nodeId } }];
  if (traits.zonal && typeof facts.availabilityZone === 'string') {
    return [{ segments: { [TOPOLOGY_ZONE]: facts.availabilityZone } }];
  }
  return [];
}
