import { afterEach, describe, expect, it } from 'vitest';
import { dropEmptyAwsVariables } from '../../src/runtime.js';
import { createTestRuntime } from '../helpers/runtime.js';

/**
 * A Docker managed plugin's settable env defaults to "", and AWS_REGION="" breaks the SDK: the
 * runtime deletes empty AWS_* variables before it builds the AWS clients.
 */

describe('dropEmptyAwsVariables', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  it('deletes only AWS_* variables whose value is empty', () => {
    const env: NodeJS.ProcessEnv = {
      AWS_REGION: '',
      AWS_ACCESS_KEY_ID: '',
      AWS_PROFILE: 'ops',
      AWS_DEFAULT_REGION: 'eu-west-1',
      STOWAGE_AWS_REGION: '',
      HOME: '',
    };
    expect(dropEmptyAwsVariables(env).sort()).toEqual(['AWS_ACCESS_KEY_ID', 'AWS_REGION']);
    expect(env).toEqual({
      AWS_PROFILE: 'ops',
      AWS_DEFAULT_REGION: 'eu-west-1',
      STOWAGE_AWS_REGION: '',
      HOME: '',
    });
  });

  it('works on process.env by default', () => {
    process.env.AWS_REGION = '';
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = '';
    dropEmptyAwsVariables();
    expect('AWS_REGION' in process.env).toBe(false);
    expect('AWS_EC2_METADATA_SERVICE_ENDPOINT' in process.env).toBe(false);
  });
});

describe('the runtime', () => {
  it('drops them before building the AWS clients of a cloud driver', async () => {
    process.env.AWS_REGION = '';
    const t = await createTestRuntime({
      flags: {
        drivers: ['ebs'],
        aws: { instanceId: 'i-0123456789abcdef0', availabilityZone: 'eu-west-1a' },
      },
    });
    try {
      expect(t.runtime.cloud).toBeDefined();
      expect('AWS_REGION' in process.env).toBe(false);
    } finally {
      await t.cleanup();
    }
  });
});
