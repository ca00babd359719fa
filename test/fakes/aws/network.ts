/**
 * The VPC network the AWS fakes share: subnets (each in one zone and one VPC) and security groups
 * (each in one VPC). The fake EC2 endpoint answers DescribeSubnets / DescribeSecurityGroups from it
 * and the fake EFS endpoint checks CreateMountTarget against it, so a subnet's zone, or whether a
 * security group exists, is the same answer from both services (give both the same instance).
 */

export interface FakeSubnet {
  subnetId: string;
  availabilityZone: string;
  /** Every mount target made in this subnet gets this address (unless the request names one). */
  ip?: string;
  /** Default vpc-0000000000000fake. */
  vpcId?: string;
  /** Default derived from the zone name, e.g. use1-az1 for us-east-1a. */
  availabilityZoneId?: string;
  /** The VPC's default security group, made with the subnet (default sg-0000000000000fake). */
  defaultSecurityGroup?: string;
  /** Default 10.0.N.0/24, N counting subnets. */
  cidrBlock?: string;
}

export interface FakeSecurityGroup {
  groupId: string;
  vpcId: string;
  groupName: string;
}

export const DEFAULT_VPC = 'vpc-0000000000000fake';

export class FakeNetwork {
  private readonly subnetRecs = new Map<string, Required<FakeSubnet>>();
  private readonly groupRecs = new Map<string, FakeSecurityGroup>();

  /** A subnet, and its VPC's default security group if that is new. */
  addSubnet(spec: FakeSubnet): Required<FakeSubnet> {
    const vpcId = spec.vpcId ?? DEFAULT_VPC;
    const rec: Required<FakeSubnet> = {
      subnetId: spec.subnetId,
      availabilityZone: spec.availabilityZone,
      ip: spec.ip ?? '',
      vpcId,
      availabilityZoneId: spec.availabilityZoneId ?? zoneId(spec.availabilityZone),
      defaultSecurityGroup: spec.defaultSecurityGroup ?? 'sg-0000000000000fake',
      cidrBlock: spec.cidrBlock ?? `10.0.${this.subnetRecs.size}.0/24`,
    };
    this.subnetRecs.set(rec.subnetId, rec);
    if (!this.groupRecs.has(rec.defaultSecurityGroup)) {
      this.addSecurityGroup({ groupId: rec.defaultSecurityGroup, vpcId, groupName: 'default' });
    }
    return rec;
  }

  addSecurityGroup(spec: { groupId: string; vpcId?: string; groupName?: string }): void {
    this.groupRecs.set(spec.groupId, {
      groupId: spec.groupId,
      vpcId: spec.vpcId ?? DEFAULT_VPC,
      groupName: spec.groupName ?? spec.groupId,
    });
  }

  subnet(id: string): Required<FakeSubnet> | undefined {
    return this.subnetRecs.get(id);
  }

  securityGroup(id: string): FakeSecurityGroup | undefined {
    return this.groupRecs.get(id);
  }

  get subnets(): Required<FakeSubnet>[] {
    return [...this.subnetRecs.values()];
  }

  get securityGroups(): FakeSecurityGroup[] {
    return [...this.groupRecs.values()];
  }
}

/** e.g. us-east-1a → use1-az1 (close enough to AWS's zone ids). */
export function zoneId(zone: string): string {
  const m = /^([a-z]+)-([a-z]+(?:-[a-z]+)*)-(\d+)([a-z])$/.exec(zone);
  if (!m) return `${zone}-id`;
  const middle = (m[2] ?? '')
    .split('-')
    .map((w) => w[0])
    .join('');
  return `${m[1]}${middle}${m[3]}-az${(m[4] ?? 'a').charCodeAt(0) - 96}`;
}
