import { type Ec2NetworkApi, StowageError } from '../../src/index.js';

export interface MountTargetPlan {
  subnets: string[];
  securityGroups: string[];
  /** This host's zone when the Create itself needs a mount target there (to make the directory). */
  hostZone?: string;
}

const bad = (msg: string) => new StowageError('INVALID_ARGUMENT', `driver efs: ${msg}`);

/**
 * Everything EFS would refuse about the new file system's mount targets, asked of EC2 before
 * anything is created (a refusal after CreateFileSystem would leave a billed file system to undo):
 * the subnets exist, share one VPC and lie in distinct zones, the security groups exist in that VPC,
 * and, when the Create needs it, one subnet is in this host's zone.
 */
export async function checkMountTargetPlan(network: Ec2NetworkApi, plan: MountTargetPlan): Promise<void> {
  const subnets = [];
  for (const id of plan.subnets) {
    const s = await network.describeSubnet(id);
    if (!s)
      throw bad(`subnet ${id} does not exist in this region; give -o subnets= with existing subnet ids`);
    subnets.push(s);
  }
  const first = subnets[0];
  if (!first) return;
  for (const [i, s] of subnets.entries()) {
    const twin = subnets.slice(0, i).find((o) => o.availabilityZone === s.availabilityZone);
    if (twin) {
      throw bad(
        `subnets ${twin.id} and ${s.id} are both in ${s.availabilityZone}, and EFS makes one mount target per zone; give one subnet per zone`,
      );
    }
    if (s.vpcId !== first.vpcId) {
      throw bad(
        `subnets ${first.id} (${first.vpcId}) and ${s.id} (${s.vpcId}) are in different VPCs; the mount targets of a file system share one VPC`,
      );
    }
  }
  for (const id of plan.securityGroups) {
    const g = await network.describeSecurityGroup(id);
    if (!g)
      throw bad(
        `security group ${id} does not exist in this region; give -o securityGroups= with existing ids`,
      );
    if (g.vpcId !== first.vpcId) {
      throw bad(
        `security group ${id} is in ${g.vpcId}, not in ${first.vpcId} of the subnets; give a group of ${first.vpcId}`,
      );
    }
  }
  if (plan.hostZone && !subnets.some((s) => s.availabilityZone === plan.hostZone)) {
    const where = subnets.map((s) => `${s.id} in ${s.availabilityZone}`).join(', ');
    throw bad(
      `no subnet is in this host's zone ${plan.hostZone} (${where}), so this host could not reach the new file system; ` +
        `add a subnet of ${plan.hostZone} to -o subnets, or give -o mountTargetIp=`,
    );
  }
}
