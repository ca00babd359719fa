import type { EC2Client } from '@aws-sdk/client-ec2';
import { type AwsClientOptions, observeCalls, sdkClientConfig } from './client-options.js';
import { awsErrorName, fromAwsError } from './errors.js';

export interface Ec2Subnet {
  id: string;
  vpcId: string;
  availabilityZone: string;
}

export interface Ec2SecurityGroup {
  id: string;
  vpcId: string;
}

/**
 * The VPC look-ups a driver needs to check its input before it creates anything (EFS mount
 * targets: do the subnets and security groups exist, which zone and VPC are they in). Read-only.
 * Errors are StowageErrors; an id EC2 does not know is undefined.
 */
export interface Ec2NetworkApi {
  describeSubnet(id: string): Promise<Ec2Subnet | undefined>;
  describeSecurityGroup(id: string): Promise<Ec2SecurityGroup | undefined>;
}

/** What EC2 answers for an id it does not know (or cannot parse): the id does not exist. */
const NOT_FOUND = new Set([
  'InvalidSubnetID.NotFound',
  'InvalidSubnetID.Malformed',
  'InvalidGroup.NotFound',
  'InvalidGroupId.Malformed',
]);

type Sdk = typeof import('@aws-sdk/client-ec2');
type Loaded = { sdk: Sdk; client: EC2Client };

export class SdkEc2Network implements Ec2NetworkApi {
  private loaded: Promise<Loaded> | undefined;

  constructor(private readonly opts: AwsClientOptions) {}

  async describeSubnet(id: string): Promise<Ec2Subnet | undefined> {
    const out = await this.call(`DescribeSubnets ${id}`, (c) =>
      c.client.send(new c.sdk.DescribeSubnetsCommand({ SubnetIds: [id] })),
    );
    const s = out?.Subnets?.find((x) => x.SubnetId === id);
    return s ? { id, vpcId: s.VpcId ?? '', availabilityZone: s.AvailabilityZone ?? '' } : undefined;
  }

  async describeSecurityGroup(id: string): Promise<Ec2SecurityGroup | undefined> {
    const out = await this.call(`DescribeSecurityGroups ${id}`, (c) =>
      c.client.send(new c.sdk.DescribeSecurityGroupsCommand({ GroupIds: [id] })),
    );
    const g = out?.SecurityGroups?.find((x) => x.GroupId === id);
    return g ? { id, vpcId: g.VpcId ?? '' } : undefined;
  }

  /** The SDK is loaded on first use, as the other AWS seams do. */
  private load(): Promise<Loaded> {
    this.loaded ??= import('@aws-sdk/client-ec2').then((sdk) => ({
      sdk,
      client: observeCalls(new sdk.EC2Client(sdkClientConfig(this.opts)), 'ec2', this.opts.observe),
    }));
    return this.loaded;
  }

  /** undefined when EC2 says the id does not exist. */
  private async call<T>(doing: string, fn: (c: Loaded) => Promise<T>): Promise<T | undefined> {
    try {
      return await fn(await this.load());
    } catch (err) {
      if (NOT_FOUND.has(awsErrorName(err) ?? '')) return undefined;
      throw fromAwsError(err, doing);
    }
  }
}
