import { expect } from 'vitest';
import type { AwsClientOptions } from '../../src/cloud/client-options.js';

/** A raw AWS SDK client's config for one of the suite's fake endpoints (which check no signature). */
export function sdkClientConfig(endpoint: string, maxAttempts = 1) {
  return {
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts,
  };
}

/** The SDK exception of class `type` a call rejects with; fails the test on anything else. */
export async function sdkError<E extends Error>(
  p: Promise<unknown>,
  type: abstract new (...args: never[]) => E,
): Promise<E> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(type);
    return err as E;
  }
  throw new Error('expected the call to fail');
}

/**
 * The options of stowage's own AWS clients (SdkEc2, SdkEfs, SdkEc2Network) for one of the suite's
 * fake endpoints: one attempt unless told (a failure a test injects is not retried away), 5 s a
 * request.
 */
export function fakeEndpointOptions(endpoint: string, maxAttempts = 1): AwsClientOptions {
  return { region: 'us-east-1', endpoint, maxAttempts, requestTimeoutMs: 5000 };
}
