import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SdkEc2Network } from '../../src/cloud/ec2-network.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { fakeEndpointOptions } from '../helpers/aws-sdk.js';
import { failure } from '../helpers/failure.js';

/** SdkEc2Network with the real @aws-sdk/client-ec2 against the fake EC2 endpoint's network model. */

let fake: FakeEc2;
let net: SdkEc2Network;

useTestAwsCredentials();

beforeAll(async () => {
  fake = await FakeEc2.start({ stateDelayMs: 0 });
  fake.network.addSubnet({ subnetId: 'subnet-0aaaaaaaaaaaaaaa1', availabilityZone: 'us-east-1a' });
  fake.network.addSecurityGroup({ groupId: 'sg-0123456789abcdef0', vpcId: 'vpc-0000000000000b0b0' });
  net = new SdkEc2Network(fakeEndpointOptions(fake.url));
});

afterAll(async () => {
  await fake.stop();
  expect(fake.errors).toEqual([]);
});

describe('SdkEc2Network', () => {
  it("answers a subnet's VPC and zone, and undefined for a subnet EC2 does not know", async () => {
    expect(await net.describeSubnet('subnet-0aaaaaaaaaaaaaaa1')).toEqual({
      id: 'subnet-0aaaaaaaaaaaaaaa1',
      vpcId: 'vpc-0000000000000fake',
      availabilityZone: 'us-east-1a',
    });
    expect(await net.describeSubnet('subnet-0ffffffffffffffff')).toBeUndefined();
    expect(fake.calls.at(-1)).toMatchObject({ action: 'DescribeSubnets', error: 'InvalidSubnetID.NotFound' });
  });

  it("answers a security group's VPC, and undefined for one EC2 does not know", async () => {
    expect(await net.describeSecurityGroup('sg-0123456789abcdef0')).toEqual({
      id: 'sg-0123456789abcdef0',
      vpcId: 'vpc-0000000000000b0b0',
    });
    expect(await net.describeSecurityGroup('sg-0ffffffffffffffff')).toBeUndefined();
  });

  it('passes other EC2 errors on as StowageErrors', async () => {
    fake.failNext('DescribeSubnets', { code: 'UnauthorizedOperation', status: 403 });
    const err = await failure(net.describeSubnet('subnet-0aaaaaaaaaaaaaaa1'));
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.message).toMatch(/^DescribeSubnets subnet-0aaaaaaaaaaaaaaa1 failed: UnauthorizedOperation/);
  });
});
