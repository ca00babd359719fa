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
