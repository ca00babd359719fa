import { DescribeSecurityGroupsCommand, DescribeSubnetsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { CreateFileSystemCommand, CreateMountTargetCommand, EFSClient } from '@aws-sdk/client-efs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeEc2 } from './ec2-endpoint.js';
import { FakeEfs } from './efs-endpoint.js';

/** The network model shared by the EC2 and EFS fakes: one answer for a subnet's zone and VPC from both. */

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
let ec2: FakeEc2;
let efs: FakeEfs;
let ec2Client: EC2Client;
let efsClient: EFSClient;

beforeAll(async () => {
  ec2 = await FakeEc2.start({ stateDelayMs: 0 });
  efs = await FakeEfs.start({ stateDelayMs: 0, network: ec2.network });
  ec2.network.addSubnet({
    subnetId: 'subnet-0aaaaaaaaaaaaaaa1',
    availabilityZone: 'us-east-1a',
    ip: '10.1.0.5',
  });
  ec2.network.addSubnet({
    subnetId: 'subnet-0bbbbbbbbbbbbbbb2',
    availabilityZone: 'us-east-1b',
    vpcId: 'vpc-0000000000000b0b0',
    defaultSecurityGroup: 'sg-00000000000000b0b',
  });
  ec2.network.addSecurityGroup({ groupId: 'sg-0123456789abcdef0', groupName: 'efs-clients' });
  ec2Client = new EC2Client({ endpoint: ec2.url, region: 'us-east-1', credentials, maxAttempts: 1 });
  efsClient = new EFSClient({ endpoint: efs.url, region: 'us-east-1', credentials, maxAttempts: 1 });
});

afterAll(async () => {
  ec2Client.destroy();
  efsClient.destroy();
  await efs.stop();
  await ec2.stop();
  expect([...ec2.errors, ...efs.errors]).toEqual([]);
});

describe('the network shared by the EC2 and EFS fakes', () => {
  it('DescribeSubnets answers the zone and VPC in which EFS then puts the mount target', async () => {
    const out = await ec2Client.send(new DescribeSubnetsCommand({ SubnetIds: ['subnet-0aaaaaaaaaaaaaaa1'] }));
    expect(
      out.Subnets?.map((s) => [s.SubnetId, s.AvailabilityZone, s.AvailabilityZoneId, s.VpcId, s.State]),
    ).toEqual([['subnet-0aaaaaaaaaaaaaaa1', 'us-east-1a', 'use1-az1', 'vpc-0000000000000fake', 'available']]);
    const fs = await efsClient.send(new CreateFileSystemCommand({ CreationToken: 'net-1' }));
    const mt = await efsClient.send(
      new CreateMountTargetCommand({ FileSystemId: fs.FileSystemId, SubnetId: 'subnet-0aaaaaaaaaaaaaaa1' }),
    );
    expect([mt.AvailabilityZoneName, mt.VpcId]).toEqual(['us-east-1a', 'vpc-0000000000000fake']);
  });

  it('filters subnets by zone and VPC; an unknown subnet id is InvalidSubnetID.NotFound', async () => {
    const inB = await ec2Client.send(
      new DescribeSubnetsCommand({ Filters: [{ Name: 'availability-zone', Values: ['us-east-1b'] }] }),
    );
    expect(inB.Subnets?.map((s) => s.SubnetId)).toEqual(['subnet-0bbbbbbbbbbbbbbb2']);
    const inVpc = await ec2Client.send(
      new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: ['vpc-0000000000000fake'] }] }),
    );
    expect(inVpc.Subnets?.map((s) => s.SubnetId)).toEqual(['subnet-0aaaaaaaaaaaaaaa1']);
    const err = await ec2Client
      .send(new DescribeSubnetsCommand({ SubnetIds: ['subnet-0ffffffffffffffff'] }))
      .then(
        () => undefined,
        (e: Error) => e,
      );
    expect(err?.name).toBe('InvalidSubnetID.NotFound');
    expect(err?.message).toBe("The subnet ID 'subnet-0ffffffffffffffff' does not exist");
  });

  it('DescribeSecurityGroups knows the named groups and each VPC default; unknown is InvalidGroup.NotFound', async () => {
    const out = await ec2Client.send(
      new DescribeSecurityGroupsCommand({ GroupIds: ['sg-0123456789abcdef0', 'sg-00000000000000b0b'] }),
    );
    const rows = out.SecurityGroups?.map((g) => [g.GroupId, g.GroupName, g.VpcId]);
    expect(rows?.sort()).toEqual([
      ['sg-00000000000000b0b', 'default', 'vpc-0000000000000b0b0'],
      ['sg-0123456789abcdef0', 'efs-clients', 'vpc-0000000000000fake'],
    ]);
    const byVpc = await ec2Client.send(
      new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'vpc-id', Values: ['vpc-0000000000000b0b0'] }] }),
    );
    expect(byVpc.SecurityGroups?.map((g) => g.GroupId)).toEqual(['sg-00000000000000b0b']);
    const err = await ec2Client
      .send(new DescribeSecurityGroupsCommand({ GroupIds: ['sg-0ffffffffffffffff'] }))
      .then(
        () => undefined,
        (e: Error) => e,
      );
    expect(err?.name).toBe('InvalidGroup.NotFound');
  });
});
