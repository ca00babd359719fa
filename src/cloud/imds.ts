import { StowageError } from '../base/errors.js';

export interface InstanceIdentity {
  instanceId: string;
  availabilityZone: string;
  region: string;
  /** The subnet of the primary network interface, when known (EFS mount targets default to it). */
  subnetId?: string;
}

export interface IdentitySource {
  identity(): Promise<InstanceIdentity>;
}

export const DEFAULT_IMDS_ENDPOINT = 'http://169.254.169.254';

/**
 * EC2 instance metadata with IMDSv2: PUT a session token, then GETs carrying it. Every request has
 * a deadline (IMDS answers in milliseconds on EC2; off EC2 nothing answers at all). The token is
 * never logged. The answer is cached: an instance does not move.
 */
export class Imdsv2 implements IdentitySource {
  private cached: Promise<InstanceIdentity> | undefined;

  constructor(
    private readonly endpoint: string,
    private readonly timeoutMs = 2000,
  ) {}

  identity(): Promise<InstanceIdentity> {
    this.cached ??= this.load().catch((err: unknown) => {
      this.cached = undefined; // a later call may succeed
      throw err;
    });
    return this.cached;
  }

  private async load(): Promise<InstanceIdentity> {
    const base = this.endpoint.replace(/\/+$/, '');
    const token = await this.request(`${base}/latest/api/token`, {
      method: 'PUT',
      headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '21600' },
    });
    const get = (path: string) =>
      this.request(`${base}/latest/meta-data/${path}`, { headers: { 'X-aws-ec2-metadata-token': token } });
    const [instanceId, availabilityZone] = await Promise.all([
      get('instance-id'),
      get('placement/availability-zone'),
    ]);
    const region = await get('placement/region').catch(() => availabilityZone.replace(/[a-z]$/, ''));
    const subnetId = await get('mac')
      .then((mac) => get(`network/interfaces/macs/${mac}/subnet-id`))
      .catch(() => undefined);
    return { instanceId, availabilityZone, region, ...(subnetId ? { subnetId } : {}) };
  }

  private async request(url: string, init: RequestInit): Promise<string> {
    let res: Response;
    try {
      res = await fetch(url, { ...init, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new StowageError(
        'UNAVAILABLE',
        `instance metadata (IMDSv2) at ${this.endpoint} did not answer within ${this.timeoutMs} ms: ` +
          `${(err as Error).message}. Off EC2, set aws.instanceId and aws.availabilityZone in the config`,
      );
    }
    if (!res.ok) {
      throw new StowageError(
        'UNAVAILABLE',
        `instance metadata answered ${res.status} for ${new URL(url).pathname}`,
      );
    }
    return (await res.text()).trim();
  }
}

/** A fixed identity from config (tests, and hosts where IMDS is unreachable). */
export class StaticIdentity implements IdentitySource {
  constructor(private readonly id: InstanceIdentity) {}
  async identity(): Promise<InstanceIdentity> {
    return this.id;
  }
}
