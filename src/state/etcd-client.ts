import { AsyncLocalStorage } from 'node:async_hooks';
import { readFileSync } from 'node:fs';
import {
  ConsecutiveBreaker,
  circuitBreaker,
  handleType,
  type IPolicy,
  isBrokenCircuitError,
  noop,
  retry,
} from 'cockatiel';
import {
  ClientClosedError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  EtcdRoleNotGrantedError,
  EtcdUserNotFoundError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  type IOptions,
  isRecoverableError,
} from 'etcd3';
import { StowageError } from '../base/errors.js';
import type { ReadCacheLog } from './etcd-cache.js';

/** How to reach etcd; parsed from the config (see parseEtcdUrl for the URL form). */
export interface EtcdStoreOptions {
  /** `http://host:port` or `https://host:port`, all of one scheme. */
  endpoints: string[];
  /** Every key stowage writes lives under `<prefix>/`. */
  prefix: string;
  /** PEM file paths: `ca` to trust the server, `cert` + `key` for client-certificate auth. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** etcd user/password auth. The password is handed to the client only, never logged. */
  auth?: { username: string; password: string };
  /** Upper bound of one store method, all its etcd calls (and tries on other endpoints) included. */
  requestTimeoutMs: number;
  /** Bound of the first contact in EtcdStore.connect() (etcd clientv3's DialTimeout); default requestTimeoutMs. */
  dialTimeoutMs?: number;
  /**
   * Keep a watch-fed copy of volumes, mounts and attachments and answer Get, Path and List from
   * it (see etcd-cache.ts); for long-lived processes (the daemon, `volumes ls`). Absent: every
   * read goes to etcd, which is cheaper for a process that reads one volume and exits.
   */
  readCache?: { heartbeatMs?: number; staleAfterMs?: number; log?: ReadCacheLog };
}

/**
 * One etcd client, set up so that a store method fails fast and the store recovers on its own:
 *
 * - Deadlines: every unary call gets the deadline of the store method it serves (kept in an
 *   AsyncLocalStorage), so a method with several calls is bounded by requestTimeoutMs as a whole.
 *   Background calls (lease re-grants) get requestTimeoutMs each. Streams (lease keepalive) get
 *   none: they live as long as the lease.
 * - Retries: etcd3's default global policy retries any "recoverable" error 3 times, so a hung
 *   server costs 3 deadlines before the caller hears about it. We retry only UNAVAILABLE (connection
 *   refused/reset), and only on the other endpoints: once per extra endpoint, none with one endpoint.
 *   Timeouts are never retried (the budget is spent; a txn that may have applied is not resent).
 * - Circuit breaker: etcd3's default per-host breaker opens after 3 failures and then refuses every
 *   call for 5 s *after etcd is back*, with a BrokenCircuitError that hides the real cause. With one
 *   endpoint there is nothing to fail over to, so no breaker. With several, a breaker (3 refused or
 *   timed-out calls in a row) lets calls skip a dead or hung member; it half-opens after 1 s, so
 *   recovery is quick.
 * - Reconnects: grpc's reconnect backoff is capped at 1 s (its default grows to 120 s), so a
 *   restarted etcd is found again within a second. etcd3 closes a host's channels after a
 *   recoverable error, so a new connection is made on the next call rather than reusing a dead one.
 * - Messages: large listings (10,000+ volumes) exceed grpc's default 4 MiB receive limit; lifted.
 */
export class EtcdConnection {
  readonly client: Etcd3;
  readonly endpoints: readonly string[];
  readonly requestTimeoutMs: number;
  private readonly username: string | undefined;
  private readonly deadlines = new AsyncLocalStorage<number>();

  constructor(opts: EtcdStoreOptions) {
    validate(opts);
    this.endpoints = [...opts.endpoints];
    this.requestTimeoutMs = opts.requestTimeoutMs;
    this.username = opts.auth?.username;
    const multi = opts.endpoints.length > 1;
    const options: IOptions = {
      hosts: [...opts.endpoints],
      defaultCallOptions: (ctx) =>
        ctx.isStream ? {} : { deadline: this.deadlines.getStore() ?? Date.now() + this.requestTimeoutMs },
      faultHandling: {
        global: multi
          ? retry(handleType(GRPCUnavailableError), { maxAttempts: opts.endpoints.length - 1 })
          : noop,
        host: (): IPolicy =>
          multi
            ? circuitBreaker(handleType(GRPCUnavailableError).orType(GRPCDeadlineExceededError), {
                halfOpenAfter: 1000,
                breaker: new ConsecutiveBreaker(3),
              })
            : noop,
      },
      grpcOptions: {
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        'grpc.max_receive_message_length': -1,
        // Connections of its own, not shared with other clients in the process: close() really
        // closes them, and two stores are two independent clients (as on two hosts).
        'grpc.use_local_subchannel_pool': 1,
      },
    };
    if (opts.auth) options.auth = { username: opts.auth.username, password: opts.auth.password };
    const creds = readTls(opts.tls);
    if (creds) options.credentials = creds;
    this.client = new Etcd3(options);
  }

  /** Runs `fn` with every etcd call in it bounded by one deadline `timeoutMs` from now. */
  async run<T>(what: string, fn: () => Promise<T>, timeoutMs = this.requestTimeoutMs): Promise<T> {
    try {
      return await this.deadlines.run(Date.now() + timeoutMs, fn);
    } catch (err) {
      throw this.translate(err, what, timeoutMs);
    }
  }

  /**
   * Runs `fn` outside any store method's deadline, for background work (a timer callback inherits
   * the async context it was set from, deadline included, which would have long passed).
   */
  detached<T>(fn: () => T): T {
    return this.deadlines.exit(fn);
  }

  /** etcd3/grpc errors -> StowageError; an existing StowageError passes through. */
  translate(err: unknown, what: string, timeoutMs = this.requestTimeoutMs): StowageError {
    if (err instanceof StowageError) return err;
    const where = `the metadata store etcd at ${this.endpoints.join(', ')}`;
    const msg = err instanceof Error ? err.message : String(err);
    if (err instanceof ClientClosedError) {
      return new StowageError('INTERNAL', `${what}: the etcd store was already closed`, { cause: err });
    }
    if (
      err instanceof EtcdAuthenticationFailedError ||
      err instanceof EtcdInvalidAuthTokenError ||
      err instanceof EtcdUserNotFoundError ||
      err instanceof GRPCUnauthenticatedError
    ) {
      const user =
        this.username === undefined ? 'without a user' : `as user ${JSON.stringify(this.username)}`;
      return new StowageError(
        'CONFIG',
        `${what}: ${where} refused to authenticate ${user} (${msg}); check the etcd user and password in the config`,
        { cause: err, retryable: false },
      );
    }
    if (/user name is empty/.test(msg)) {
      return new StowageError(
        'CONFIG',
        `${what}: ${where} requires a user and password (auth is enabled there); give them in the config`,
        { cause: err, retryable: false },
      );
    }
    if (err instanceof EtcdPermissionDeniedError || err instanceof EtcdRoleNotGrantedError) {
      return new StowageError(
        'CONFIG',
        `${what}: ${where} denied access (${msg}); grant the etcd user read/write on the stowage prefix`,
        { cause: err, retryable: false },
      );
    }
    if (isBrokenCircuitError(err)) {
      return new StowageError(
        'UNAVAILABLE',
        `${what}: ${where} did not answer: every endpoint failed its last calls and is retried after 1 s; check that etcd is running and reachable`,
        { cause: err },
      );
    }
    if (err instanceof Error && isRecoverableError(err)) {
      const detail = tidy(msg);
      // A certificate problem never heals by retrying: it is the config.
      if (/certificate|SSL routines|ssl3_|alert number|wrong version number|handshake/i.test(msg)) {
        return new StowageError(
          'CONFIG',
          `${what}: ${where} refused the TLS connection (${detail}); check etcd.ca (it must have signed etcd's certificate), etcd.cert and etcd.key in the config`,
          { cause: err, retryable: false },
        );
      }
      if (/deadline/i.test(msg)) {
        return new StowageError(
          'UNAVAILABLE',
          `${what}: ${where} did not answer within ${timeoutMs} ms: ${detail}; check that etcd is running and reachable`,
          { cause: err },
        );
      }
      return new StowageError(
        'UNAVAILABLE',
        `${what}: ${where} could not be reached: ${detail}; check that etcd is running and reachable (and use etcds:// if it serves TLS)`,
        { cause: err },
      );
    }
    return new StowageError('INTERNAL', `${what}: etcd request failed: ${msg}`, { cause: err });
  }

  close(): void {
    this.client.close();
  }
}

function validate(opts: EtcdStoreOptions): void {
  const bad = (why: string) => new StowageError('CONFIG', `invalid etcd store settings: ${why}`);
  if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) throw bad('no endpoints given');
  for (const e of opts.endpoints) {
    if (!/^https?:\/\/[^/@]+$/.test(e)) throw bad(`endpoint ${JSON.stringify(e)} is not http(s)://host:port`);
  }
  const secure = opts.endpoints.filter((e) => e.startsWith('https://')).length;
  if (secure !== 0 && secure !== opts.endpoints.length) throw bad('endpoints mix http:// and https://');
  if (opts.tls && secure === 0) throw bad('TLS files are given but the endpoints use http://; use etcds://');
  if (!Number.isFinite(opts.requestTimeoutMs) || opts.requestTimeoutMs <= 0) {
    throw bad(`requestTimeoutMs must be a positive number of milliseconds, not ${opts.requestTimeoutMs}`);
  }
  if (opts.dialTimeoutMs !== undefined && !(Number.isFinite(opts.dialTimeoutMs) && opts.dialTimeoutMs > 0)) {
    throw bad(`dialTimeoutMs must be a positive number of milliseconds, not ${opts.dialTimeoutMs}`);
  }
  if (opts.auth && (!opts.auth.username || typeof opts.auth.password !== 'string')) {
    throw bad('auth needs a username and a password');
  }
}

function readTls(tls: EtcdStoreOptions['tls']): IOptions['credentials'] | undefined {
  if (!tls || (!tls.ca && !tls.cert && !tls.key)) return undefined;
  if (Boolean(tls.cert) !== Boolean(tls.key)) {
    throw new StowageError('CONFIG', 'invalid etcd TLS settings: give both cert and key, or neither');
  }
  const read = (what: string, path: string | undefined) => {
    if (!path) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new StowageError(
        'CONFIG',
        `cannot read the etcd TLS ${what} file ${path}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  };
  const ca = read('CA', tls.ca);
  const cert = read('certificate', tls.cert);
  const key = read('key', tls.key);
  // grpc takes a missing root certificate as "the system's roots"; etcd3's type wants a Buffer.
  const creds = { rootCertificate: ca as Buffer } as NonNullable<IOptions['credentials']>;
  if (key) creds.privateKey = key;
  if (cert) creds.certChain = cert;
  return creds;
}

/** grpc's messages carry newlines, timestamps and empty "Resolution note:" tails. */
function tidy(msg: string): string {
  return msg
    .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '')
    .replace(/\.?\s*Resolution note:\s*$/, '')
    .replace(/\s+/g, ' ')
    .trim();
}
