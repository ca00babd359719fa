import type { Ec2Api } from './ec2.js';

/**
 * The cloud's answer to "which machine is this Kubernetes node?", for a node that has not
 * registered itself in the store yet (a controller's first attach to a fresh node).
 */
export interface NodeLookup {
  /** The machine behind `nodeName` and what a host record of it would say; undefined if none. */
  find(nodeName: string): Promise<{ instanceId: string; identity: Record<string, unknown> } | undefined>;
  /** How "nothing found" reads in an error, after "is not a registered stowage host and …". */
  readonly missing: string;
}

/** On AWS kubelet names a node by its private DNS name: EC2 finds the instance by it. */
export class Ec2NodeLookup implements NodeLookup {
  readonly missing = 'EC2 has no instance with that private DNS name';

  constructor(private readonly ec2: Ec2Api) {}

  async find(nodeName: string) {
    const inst = await this.ec2.findInstanceByPrivateDnsName(nodeName);
    if (!inst) return undefined;
    return {
      instanceId: inst.id,
      identity: { instanceId: inst.id, availabilityZone: inst.availabilityZone, privateDnsName: nodeName },
    };
  }
}
