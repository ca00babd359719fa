import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LoopbackEndpoint } from './http-endpoint.js';

/**
 * EC2 instance metadata (IMDSv2) on 127.0.0.1 for tests: `PUT /latest/api/token` with
 * `X-aws-ec2-metadata-token-ttl-seconds` hands out a session token, and every metadata GET must
 * carry it in `X-aws-ec2-metadata-token` (401 otherwise, as on an instance with
 * HttpTokens=required). It can be made to hang (`stall`) or to answer an error (`failStatus`),
 * at start or later, to test timeouts and fallbacks. Point the SDK at it with
 * AWS_EC2_METADATA_SERVICE_ENDPOINT=url.
 */

export interface FakeImdsOptions {
  instanceId: string;
  availabilityZone: string;
  region: string;
  /** IMDSv2 only (default true); false also answers token-less IMDSv1 GETs. */
  requireToken?: boolean;
  /** Default ip-10-0-0-10.<region>.compute.internal (ec2.internal in us-east-1). */
  localHostname?: string;
  localIpv4?: string;
  instanceType?: string;
  accountId?: string;
  /** Accept requests and never answer them (until stop()). */
  stall?: boolean;
  /** Answer every request with this HTTP status (e.g. 500, 503, 404). */
  failStatus?: number;
}

export interface ImdsCall {
  method: string;
  path: string;
  /** Whether a token header came, and whether it was one this server issued and not expired. */
  token: 'none' | 'valid' | 'invalid';
  /** The status answered, or 'stalled'. */
  status: number | 'stalled';
  at: number;
}

const MAX_TTL_SECONDS = 21600;

export class FakeImds {
  readonly calls: ImdsCall[] = [];
  /** Changeable at any time. */
  stall: boolean;
  failStatus: number | undefined;
  requireToken: boolean;

  private readonly tokens = new Map<string, number>(); // token -> expiry (ms)
  private readonly stalled = new Set<ServerResponse>();
  private readonly metadata: Record<string, string>;
  private readonly document: string;

  private constructor(
    private readonly http: LoopbackEndpoint,
    readonly url: string,
    readonly opts: FakeImdsOptions,
  ) {
    this.stall = opts.stall ?? false;
    this.failStatus = opts.failStatus;
    this.requireToken = opts.requireToken ?? true;
    const domain = opts.region === 'us-east-1' ? 'ec2.internal' : `${opts.region}.compute.internal`;
    const localIpv4 = opts.localIpv4 ?? '10.0.0.10';
    const hostname = opts.localHostname ?? `ip-${localIpv4.replaceAll('.', '-')}.${domain}`;
    const instanceType = opts.instanceType ?? 'm5.large';
    this.metadata = {
      'instance-id': opts.instanceId,
      'instance-type': instanceType,
      'local-hostname': hostname,
      hostname,
      'local-ipv4': localIpv4,
      'ami-id': 'ami-0123456789abcdef0',
      'placement/availability-zone': opts.availabilityZone,
      'placement/region': opts.region,
    };
    this.document = JSON.stringify(
      {
        accountId: opts.accountId ?? '123456789012',
        architecture: 'x86_64',
        availabilityZone: opts.availabilityZone,
        imageId: 'ami-0123456789abcdef0',
        instanceId: opts.instanceId,
        instanceType,
        pendingTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        privateIp: localIpv4,
        region: opts.region,
        version: '2017-09-30',
      },
      null,
      2,
    );
  }

  static async start(opts: FakeImdsOptions): Promise<FakeImds> {
    const http = await LoopbackEndpoint.listen();
    const imds = new FakeImds(http, http.url, opts);
    http.serve((req, res) => imds.onRequest(req, res));
    return imds;
  }

  /** Every token issued so far stops being valid (as after their TTL). */
  expireTokens(): void {
    this.tokens.clear();
  }

  async stop(): Promise<void> {
    for (const res of this.stalled) res.destroy();
    this.stalled.clear();
    await this.http.close();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    req.resume(); // bodies are not used
    const path = new URL(req.url ?? '/', this.url).pathname;
    const header = req.headers['x-aws-ec2-metadata-token'];
    const given = Array.isArray(header) ? header[0] : header;
    const expiry = given === undefined ? undefined : this.tokens.get(given);
    const token: ImdsCall['token'] =
      given === undefined ? 'none' : expiry !== undefined && expiry > Date.now() ? 'valid' : 'invalid';
    const call: ImdsCall = { method: req.method ?? '', path, token, status: 'stalled', at: Date.now() };
    this.calls.push(call);

    const send = (status: number, body: string, headers: Record<string, string> = {}) => {
      call.status = status;
      res.writeHead(status, { 'content-type': 'text/plain', server: 'EC2ws', ...headers });
      res.end(body);
    };

    if (this.stall) {
      this.stalled.add(res);
      res.on('close', () => this.stalled.delete(res));
      return;
    }
    if (this.failStatus !== undefined) {
      send(this.failStatus, `fake IMDS failure ${this.failStatus}`);
      return;
    }

    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') {
        send(405, 'Method Not Allowed');
        return;
      }
      if (req.headers['x-forwarded-for'] !== undefined) {
        send(403, 'Forbidden');
        return;
      }
      const ttlHeader = req.headers['x-aws-ec2-metadata-token-ttl-seconds'];
      const ttl = Number(Array.isArray(ttlHeader) ? ttlHeader[0] : ttlHeader);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) {
        send(400, 'Bad Request');
        return;
      }
      const issued = randomBytes(42).toString('base64');
      this.tokens.set(issued, Date.now() + ttl * 1000);
      send(200, issued, { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) });
      return;
    }

    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(405, 'Method Not Allowed');
      return;
    }
    if (token === 'invalid' || (token === 'none' && this.requireToken)) {
      send(401, 'Unauthorized');
      return;
    }
    const body = this.lookup(path);
    if (body === undefined) {
      send(404, 'Not Found');
      return;
    }
    send(200, body);
  }

  private lookup(path: string): string | undefined {
    if (path === '/latest/dynamic/instance-identity/document') return this.document;
    const prefix = '/latest/meta-data/';
    if (path === '/latest/meta-data' || path === prefix) {
      const top = new Set(
        Object.keys(this.metadata).map((k) => (k.includes('/') ? `${k.split('/')[0]}/` : k)),
      );
      return [...top].sort().join('\n');
    }
    if (!path.startsWith(prefix)) return undefined;
    const key = path.slice(prefix.length).replace(/\/$/, '');
    const value = this.metadata[key];
    if (value !== undefined) return value;
    const children = Object.keys(this.metadata)
      .filter((k) => k.startsWith(`${key}/`))
      .map((k) => k.slice(key.length + 1));
    return children.length > 0 ? children.sort().join('\n') : undefined;
  }
}
