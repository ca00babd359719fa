import { afterAll, beforeAll, vi } from 'vitest';

/**
 * For the whole test file: the AWS SDK signs every request and wants credentials to do it; the
 * suite's EC2/EFS endpoints do not check them. An empty session token must count as none.
 */
export function useTestAwsCredentials(): void {
  beforeAll(() => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIDTEST');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test-secret');
    vi.stubEnv('AWS_SESSION_TOKEN', '');
  });
  afterAll(() => {
    vi.unstubAllEnvs();
  });
}
