import type { InitializeMiddleware, MetadataBearer, MiddlewareStack } from '@smithy/types';
import { awsErrorName } from './errors.js';

/** What every AWS client of stowage is built with (the `aws` config section plus an endpoint). */
export interface AwsClientOptions {
  /** A region, or a function that finds it (the instance's own, through IMDS). */
  region: string | (() => Promise<string>);
  /** Explicit endpoint (config); otherwise the SDK's own resolution (AWS_ENDPOINT_URL_<SERVICE>). */
  endpoint?: string;
  /** Attempts per call, with the SDK's standard backoff for throttling and transient errors. */
  maxAttempts: number;
  requestTimeoutMs: number;
  /**
   * Credentials given with a request (a PersistentVolume's Secret); without them the SDK's default
   * chain (environment, profile, instance role) finds its own.
   */
  credentials?: AwsCredentials;
  /** Hears of every call of the client (metrics); see observeCalls. */
  observe?: CloudCallObserver;
}

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** The SDK client configuration for those options: standard retries, a deadline on every request. */
export function sdkClientConfig(o: AwsClientOptions) {
  return {
    region: o.region,
    maxAttempts: o.maxAttempts,
    retryMode: 'standard',
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    ...(o.credentials ? { credentials: o.credentials } : {}),
    requestHandler: {
      requestTimeout: o.requestTimeoutMs,
      connectionTimeout: Math.min(o.requestTimeoutMs, 5000),
    },
  };
}

/** One AWS API call as a metric sees it: `code` is `OK` or AWS's error code (after the retries). */
export interface CloudCall {
  service: string;
  operation: string;
  code: string;
  seconds: number;
}
export type CloudCallObserver = (call: CloudCall) => void;

/**
 * Times every call of an SDK client, retries included, by adding one middleware at the first
 * step of its stack. Returns the client. Without an observer the client is left as it is.
 */
export function observeCalls<I extends object, O extends MetadataBearer, C>(
  client: C & { middlewareStack: MiddlewareStack<I, O> },
  service: string,
  observe: CloudCallObserver | undefined,
): C & { middlewareStack: MiddlewareStack<I, O> } {
  if (!observe) return client;
  const timing: InitializeMiddleware<I, O> = (next, context) => async (args) => {
    const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
    const start = performance.now();
    const report = (code: string) =>
      observe({ service, operation, code, seconds: (performance.now() - start) / 1000 });
    try {
      const out = await next(args);
      report('OK');
      return out;
    } catch (err) {
      report(awsErrorName(err) ?? 'Unknown');
      throw err;
    }
  };
  client.middlewareStack.add(timing, { step: 'initialize', name: 'stowageCallTiming', priority: 'high' });
  return client;
}
