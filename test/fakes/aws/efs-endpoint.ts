import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LoopbackEndpoint, readBody } from './http-endpoint.js';
import { InjectedFailures } from './injected-failures.js';
import { FakeNetwork, type FakeSubnet } from './network.js';

/**
 * A stateful EFS endpoint for tests: the EFS REST-JSON protocol (`/2015-02-01/...`, JSON bodies,
 * errors named by the `x-amzn-errortype` header) on 127.0.0.1, good enough for the real
 * @aws-sdk/client-efs to create, describe and delete file systems, mount targets and access points.
 *
 * Lifecycle states are computed from timestamps: a resource is `creating` for `stateDelayMs`, then
 * `available`; a delete makes it `deleting` for `stateDelayMs`, then it is gone (describes no longer
 * list it, lookups by id answer *NotFound).
 *
 * AWS semantics mirrored: CreateFileSystem with a CreationToken already in use answers 409
 * `FileSystemAlreadyExists` carrying the existing `FileSystemId` (it does not return the file system
 * again); CreateAccessPoint with a ClientToken already used for the same request returns the
 * existing access point, for a different request 409 `AccessPointAlreadyExists` with `AccessPointId`.
 * CreateMountTarget checks the shared network model (network.ts): an unknown subnet is
 * `SubnetNotFound`, a security group that does not exist in the subnet's VPC `SecurityGroupNotFound`,
 * a second mount target in one zone `MountTargetConflict`.
 */

const API = '/2015-02-01';
const MAX_BODY_BYTES = 1024 * 1024;
/** The upper limit the shipped SDK documents for ProvisionedThroughputInMibps (it varies by Region). */
const MAX_PROVISIONED_MIBPS = 3414;

// --- public types ------------------------------------------------------------------------------

export interface FakeEfsOptions {
  /** How long creating/deleting last (default 50 ms); may be changed later via `stateDelayMs`. */
  stateDelayMs?: number;
  /** Default us-east-1. */
  region?: string;
  /** Account id reported as OwnerId (default 123456789012). */
  ownerId?: string;
  /** Access points per file system before AccessPointLimitExceeded (default 1000). */
  accessPointLimit?: number;
  /** Subnets and security groups; give the fake EC2 endpoint the same one (default: a new one). */
  network?: FakeNetwork;
}

export type FakeEfsSubnet = FakeSubnet;

export interface FakeEfsSeed {
  fileSystemId: string;
  creationToken?: string;
  tags?: Record<string, string>;
  /** Mount targets that exist (available) already; their subnets must have been added. */
  mountTargets?: { subnetId: string; ip?: string; mountTargetId?: string }[];
}

export type EfsOperation =
  | 'CreateFileSystem'
  | 'DescribeFileSystems'
  | 'DeleteFileSystem'
  | 'CreateMountTarget'
  | 'DescribeMountTargets'
  | 'DeleteMountTarget'
  | 'DescribeMountTargetSecurityGroups'
  | 'CreateAccessPoint'
  | 'DescribeAccessPoints'
  | 'DeleteAccessPoint';

export interface FakeEfsFailure {
  /** The error code (becomes the SDK exception's name), e.g. FileSystemNotFound, ThrottlingException. */
  code: string;
  /** Default: the status AWS uses for that code (see ERROR_STATUS), else 400. */
  status?: number;
  message?: string;
  /** How many of the next calls fail (default 1). */
  times?: number;
  /** Extra members of the JSON error body (e.g. { FileSystemId }). */
  extra?: Record<string, string>;
}

export interface EfsCall {
  /** The operation routed to, or 'Unknown'. */
  operation: EfsOperation | 'Unknown';
  method: string;
  path: string;
  /** Query parameters and path labels (FileSystemId, MountTargetId, AccessPointId). */
  params: Record<string, string>;
  /** The parsed JSON body of POSTs, else undefined. */
  body: unknown;
  at: number;
  /** The error code answered, if any. */
  error?: string;
}

export type EfsLifeCycleState = 'creating' | 'available' | 'deleting';

export interface FakeFileSystem {
  fileSystemId: string;
  fileSystemArn: string;
  creationToken: string;
  state: EfsLifeCycleState;
  performanceMode: string;
  throughputMode: string;
  provisionedThroughputInMibps?: number;
  encrypted: boolean;
  kmsKeyId?: string;
  tags: Record<string, string>;
  createdAt: Date;
  numberOfMountTargets: number;
}

export interface FakeMountTarget {
  mountTargetId: string;
  fileSystemId: string;
  subnetId: string;
  vpcId: string;
  availabilityZone: string;
  availabilityZoneId: string;
  ipAddress: string;
  networkInterfaceId: string;
  securityGroups: string[];
  state: EfsLifeCycleState;
}

export interface FakePosixUser {
  uid: number;
  gid: number;
  secondaryGids?: number[];
}

export interface FakeAccessPoint {
  accessPointId: string;
  accessPointArn: string;
  fileSystemId: string;
  clientToken: string;
  posixUser?: FakePosixUser;
  rootDirectory: {
    path: string;
    creationInfo?: { ownerUid: number; ownerGid: number; permissions: string };
  };
  tags: Record<string, string>;
  state: EfsLifeCycleState;
}

// --- errors ------------------------------------------------------------------------------------

/** HTTP statuses of EFS errors, as the service model declares them. */
export const ERROR_STATUS: Readonly<Record<string, number>> = {
  AccessPointAlreadyExists: 409,
  AccessPointLimitExceeded: 403,
  AccessPointNotFound: 404,
  BadRequest: 400,
  DependencyTimeout: 504,
  FileSystemAlreadyExists: 409,
  FileSystemInUse: 409,
  FileSystemLimitExceeded: 403,
  FileSystemNotFound: 404,
  IncorrectFileSystemLifeCycleState: 409,
  IncorrectMountTargetState: 409,
  InsufficientThroughputCapacity: 503,
  InternalServerError: 500,
  IpAddressInUse: 409,
  MountTargetConflict: 409,
  MountTargetNotFound: 404,
  NetworkInterfaceLimitExceeded: 409,
  NoFreeAddressesInSubnet: 409,
  SecurityGroupLimitExceeded: 400,
  SecurityGroupNotFound: 400,
  SubnetNotFound: 400,
  ThrottlingException: 429,
  TooManyRequests: 429,
  UnknownOperationException: 404,
  ValidationException: 400,
};

class EfsApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly extra: Record<string, string> = {},
    readonly status = ERROR_STATUS[code] ?? 400,
  ) {
    super(message);
  }
}

// --- internal state ----------------------------------------------------------------------------

interface Tag {
  Key: string;
  Value: string;
}

interface Lifecycle {
  availableAt: number;
  deleteRequestedAt?: number;
  goneAt?: number;
}

type State = EfsLifeCycleState | 'gone';

function stateOf(r: Lifecycle, now: number): State {
  if (r.goneAt !== undefined && now >= r.goneAt) return 'gone';
  if (r.deleteRequestedAt !== undefined) return 'deleting';
  return now >= r.availableAt ? 'available' : 'creating';
}

interface FileSystemRec extends Lifecycle {
  readonly fileSystemId: string;
  readonly creationToken: string;
  readonly createdAt: number;
  readonly performanceMode: string;
  readonly throughputMode: string;
  readonly provisionedThroughputInMibps?: number;
  readonly encrypted: boolean;
  readonly kmsKeyId?: string;
  readonly tags: Tag[];
}

interface MountTargetRec extends Lifecycle {
  readonly mountTargetId: string;
  readonly fileSystemId: string;
  readonly subnet: Required<FakeSubnet>;
  readonly ipAddress: string;
  readonly networkInterfaceId: string;
  readonly securityGroups: string[];
}

interface AccessPointRec extends Lifecycle {
  readonly accessPointId: string;
  readonly fileSystemId: string;
  readonly clientToken: string;
  readonly posixUser?: { Uid: number; Gid: number; SecondaryGids?: number[] };
  readonly rootDirectory: {
    Path: string;
    CreationInfo?: { OwnerUid: number; OwnerGid: number; Permissions: string };
  };
  readonly tags: Tag[];
  /** The request, canonicalised, to tell an idempotent retry from a conflicting reuse. */
  readonly requestKey: string;
}

type Json = Record<string, unknown>;

interface Reply {
  status: number;
  body?: unknown;
}

function hexId(prefix: string): string {
  return `${prefix}-${randomBytes(9).toString('hex').slice(0, 17)}`;
}

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(body: Json, name: string, requiredField = false): string | undefined {
  const v = body[name];
  if (v === undefined || v === null) {
    if (requiredField) throw new EfsApiError('BadRequest', `${name} is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw new EfsApiError('BadRequest', `${name} must be a string`);
  if (requiredField && v === '') throw new EfsApiError('BadRequest', `${name} must not be empty`);
  return v;
}

function nonNegativeInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new EfsApiError('BadRequest', `${name} must be a non-negative integer`);
  }
  return v;
}

function parseTags(v: unknown): Tag[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new EfsApiError('BadRequest', 'Tags must be a list');
  return v.map((t) => {
    if (!isRecord(t) || typeof t.Key !== 'string' || typeof t.Value !== 'string') {
      throw new EfsApiError('BadRequest', 'Each tag needs a Key and a Value');
    }
    return { Key: t.Key, Value: t.Value };
  });
}

function tagRecord(tags: readonly Tag[]): Record<string, string> {
  return Object.fromEntries(tags.map((t) => [t.Key, t.Value]));
}

function nameTag(tags: readonly Tag[]): string | undefined {
  return tags.find((t) => t.Key === 'Name')?.Value;
}

/** One page of `all`, with an opaque marker for the next. */
function page<T>(
  all: T[],
  maxRaw: string | undefined,
  marker: string | undefined,
): { items: T[]; next?: string } {
  let start = 0;
  if (marker !== undefined) {
    start = Number(Buffer.from(marker, 'base64url').toString());
    if (!Number.isInteger(start) || start < 0) throw new EfsApiError('BadRequest', 'Invalid marker');
  }
  let max = all.length;
  if (maxRaw !== undefined) {
    max = Number(maxRaw);
    if (!Number.isInteger(max) || max < 1) throw new EfsApiError('BadRequest', 'MaxItems must be at least 1');
  }
  const items = all.slice(start, start + max);
  return start + max < all.length
    ? { items, next: Buffer.from(String(start + max)).toString('base64url') }
    : { items };
}

// --- the fake ----------------------------------------------------------------------------------

export class FakeEfs {
  /** Every request, in arrival order. */
  readonly calls: EfsCall[] = [];
  /** Unexpected failures (handler bugs); a test should expect none. */
  readonly errors: Error[] = [];
  /** How long creating/deleting last; may be changed between calls. */
  stateDelayMs: number;
  accessPointLimit: number;
  readonly region: string;
  readonly ownerId: string;
  readonly network: FakeNetwork;

  private readonly fss = new Map<string, FileSystemRec>();
  private readonly mts = new Map<string, MountTargetRec>();
  private readonly aps = new Map<string, AccessPointRec>();
  private readonly failures = new InjectedFailures<FakeEfsFailure>();
  private nextHost = 10;

  private constructor(
    private readonly http: LoopbackEndpoint,
    readonly url: string,
    opts: FakeEfsOptions,
  ) {
    this.stateDelayMs = opts.stateDelayMs ?? 50;
    this.region = opts.region ?? 'us-east-1';
    this.ownerId = opts.ownerId ?? '123456789012';
    this.accessPointLimit = opts.accessPointLimit ?? 1000;
    this.network = opts.network ?? new FakeNetwork();
  }

  static async start(opts: FakeEfsOptions = {}): Promise<FakeEfs> {
    const http = await LoopbackEndpoint.listen();
    const fake = new FakeEfs(http, http.url, opts);
    http.serveAsync(
      (req, res) => fake.onRequest(req, res),
      (err) => fake.errors.push(err),
    );
    return fake;
  }

  async stop(): Promise<void> {
    await this.http.close();
  }

  // --- test controls ---------------------------------------------------------------------------

  /** A subnet CreateMountTarget may name; its zone becomes the mount target's AvailabilityZoneName. */
  addSubnet(spec: FakeSubnet): void {
    this.network.addSubnet(spec);
  }

  /** States an existing, available file system (and mount targets), as if made outside the test. */
  addFileSystem(seed: FakeEfsSeed): void {
    if (!/^fs-[0-9a-f]{8,40}$/.test(seed.fileSystemId))
      throw new Error(`bad file system id ${seed.fileSystemId}`);
    const now = Date.now();
    const fs: FileSystemRec = {
      fileSystemId: seed.fileSystemId,
      creationToken: seed.creationToken ?? `seeded-${seed.fileSystemId}`,
      createdAt: now,
      availableAt: now,
      performanceMode: 'generalPurpose',
      throughputMode: 'bursting',
      encrypted: false,
      tags: Object.entries(seed.tags ?? {}).map(([Key, Value]) => ({ Key, Value })),
    };
    this.fss.set(fs.fileSystemId, fs);
    for (const m of seed.mountTargets ?? []) {
      const subnet = this.network.subnet(m.subnetId);
      if (!subnet) throw new Error(`addFileSystem: unknown subnet ${m.subnetId} (addSubnet first)`);
      const mt: MountTargetRec = {
        mountTargetId: m.mountTargetId ?? hexId('fsmt'),
        fileSystemId: fs.fileSystemId,
        subnet,
        ipAddress: m.ip ?? (subnet.ip || this.allocateIp()),
        networkInterfaceId: hexId('eni'),
        securityGroups: [subnet.defaultSecurityGroup],
        availableAt: now,
      };
      this.mts.set(mt.mountTargetId, mt);
    }
  }

  /**
   * The next `times` calls of `operation` ('*' for any) fail with this error before doing anything.
   * Throttling: `{ code: 'ThrottlingException' }` (HTTP 429).
   */
  failNext(operation: EfsOperation | '*', failure: FakeEfsFailure): void {
    this.failures.add(operation, failure);
  }

  /** File systems not yet gone, as they are now. */
  get fileSystems(): FakeFileSystem[] {
    const now = Date.now();
    return [...this.fss.values()].filter((f) => stateOf(f, now) !== 'gone').map((f) => this.fsView(f, now));
  }

  get mountTargets(): FakeMountTarget[] {
    const now = Date.now();
    return [...this.mts.values()].filter((m) => stateOf(m, now) !== 'gone').map((m) => this.mtView(m, now));
  }

  get accessPoints(): FakeAccessPoint[] {
    const now = Date.now();
    return [...this.aps.values()].filter((a) => stateOf(a, now) !== 'gone').map((a) => this.apView(a, now));
  }

  // --- HTTP ------------------------------------------------------------------------------------

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const raw = await readBody(req, MAX_BODY_BYTES);
    if (raw === 'gone') return;
    if (raw === 'too-large') {
      this.send(res, requestId, this.errorReply(new EfsApiError('BadRequest', 'Request body too large')));
      return;
    }
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    const params: Record<string, string> = {};
    for (const [k, v] of url.searchParams) params[k] = v;
    const route = this.route(method, url.pathname, params);
    const call: EfsCall = {
      operation: route?.operation ?? 'Unknown',
      method,
      path: url.pathname,
      params,
      body: undefined,
      at: Date.now(),
    };
    this.calls.push(call);

    let reply: Reply;
    try {
      let body: Json = {};
      if (raw.trim() !== '') {
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw);
        } catch {
          throw new EfsApiError('BadRequest', 'The request body is not valid JSON');
        }
        if (!isRecord(parsed)) throw new EfsApiError('BadRequest', 'The request body must be a JSON object');
        body = parsed;
        call.body = parsed;
      }
      const failure = route ? this.failures.take(route.operation) : undefined;
      if (failure) {
        throw new EfsApiError(
          failure.code,
          failure.message ?? failure.code,
          failure.extra,
          failure.status ?? ERROR_STATUS[failure.code] ?? 400,
        );
      }
      if (!route) {
        throw new EfsApiError('UnknownOperationException', `No EFS operation for ${method} ${url.pathname}`);
      }
      reply = route.run(body, Date.now());
    } catch (err) {
      if (!(err instanceof EfsApiError)) this.errors.push(err as Error);
      const apiErr =
        err instanceof EfsApiError
          ? err
          : new EfsApiError('InternalServerError', `fake EFS: ${(err as Error).message}`);
      call.error = apiErr.code;
      reply = this.errorReply(apiErr);
    }
    this.send(res, requestId, reply, call.error);
  }

  private errorReply(err: EfsApiError): Reply {
    return { status: err.status, body: { ErrorCode: err.code, Message: err.message, ...err.extra } };
  }

  private send(res: ServerResponse, requestId: string, reply: Reply, errorCode?: string): void {
    const headers: Record<string, string> = { 'x-amzn-requestid': requestId };
    if (errorCode !== undefined) headers['x-amzn-errortype'] = errorCode;
    if (reply.body === undefined) {
      res.writeHead(reply.status, headers);
      res.end();
      return;
    }
    const text = JSON.stringify(reply.body);
    res.writeHead(reply.status, {
      ...headers,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
    });
    res.end(text);
  }

  private route(
    method: string,
    pathname: string,
    params: Record<string, string>,
  ): { operation: EfsOperation; run: (body: Json, now: number) => Reply } | undefined {
    if (!pathname.startsWith(`${API}/`)) return undefined;
    const parts = pathname
      .slice(API.length + 1)
      .split('/')
      .map((p) => decodeURIComponent(p));
    const [collection, id, sub] = parts;
    const q = { ...params };
    const label = (name: string): void => {
      params[name] = id ?? '';
    };
    if (parts.length === 1) {
      const key = `${method} ${collection}`;
      if (key === 'POST file-systems')
        return { operation: 'CreateFileSystem', run: (b, n) => this.createFs(b, n) };
      if (key === 'GET file-systems')
        return { operation: 'DescribeFileSystems', run: (_b, n) => this.describeFs(q, n) };
      if (key === 'POST mount-targets')
        return { operation: 'CreateMountTarget', run: (b, n) => this.createMt(b, n) };
      if (key === 'GET mount-targets')
        return { operation: 'DescribeMountTargets', run: (_b, n) => this.describeMt(q, n) };
      if (key === 'POST access-points')
        return { operation: 'CreateAccessPoint', run: (b, n) => this.createAp(b, n) };
      if (key === 'GET access-points')
        return { operation: 'DescribeAccessPoints', run: (_b, n) => this.describeAp(q, n) };
      return undefined;
    }
    if (id === undefined || id === '') return undefined;
    if (parts.length === 2 && method === 'DELETE') {
      if (collection === 'file-systems') {
        label('FileSystemId');
        return { operation: 'DeleteFileSystem', run: (_b, n) => this.deleteFs(id, n) };
      }
      if (collection === 'mount-targets') {
        label('MountTargetId');
        return { operation: 'DeleteMountTarget', run: (_b, n) => this.deleteMt(id, n) };
      }
      if (collection === 'access-points') {
        label('AccessPointId');
        return { operation: 'DeleteAccessPoint', run: (_b, n) => this.deleteAp(id, n) };
      }
    }
    if (
      parts.length === 3 &&
      method === 'GET' &&
      collection === 'mount-targets' &&
      sub === 'security-groups'
    ) {
      label('MountTargetId');
      return { operation: 'DescribeMountTargetSecurityGroups', run: (_b, n) => this.mtSecurityGroups(id, n) };
    }
    return undefined;
  }

  // --- file systems ----------------------------------------------------------------------------

  private createFs(body: Json, now: number): Reply {
    const token = str(body, 'CreationToken', true) as string;
    const existing = [...this.fss.values()].find(
      (f) => f.creationToken === token && stateOf(f, now) !== 'gone',
    );
    if (existing) {
      throw new EfsApiError(
        'FileSystemAlreadyExists',
        `File system '${existing.fileSystemId}' already exists with creation token '${token}'`,
        { FileSystemId: existing.fileSystemId },
      );
    }
    const performanceMode = str(body, 'PerformanceMode') ?? 'generalPurpose';
    if (!['generalPurpose', 'maxIO'].includes(performanceMode)) {
      throw new EfsApiError('BadRequest', `Invalid PerformanceMode ${performanceMode}`);
    }
    const throughputMode = str(body, 'ThroughputMode') ?? 'bursting';
    if (!['bursting', 'provisioned', 'elastic'].includes(throughputMode)) {
      throw new EfsApiError('BadRequest', `Invalid ThroughputMode ${throughputMode}`);
    }
    const provisioned = body.ProvisionedThroughputInMibps;
    if (throughputMode === 'provisioned' && (typeof provisioned !== 'number' || provisioned < 1)) {
      throw new EfsApiError('BadRequest', 'ProvisionedThroughputInMibps is required in provisioned mode');
    }
    if (typeof provisioned === 'number' && provisioned > MAX_PROVISIONED_MIBPS) {
      throw new EfsApiError(
        'BadRequest',
        `ProvisionedThroughputInMibps ${provisioned} is above this Region's limit of ${MAX_PROVISIONED_MIBPS}`,
      );
    }
    if (throughputMode !== 'provisioned' && provisioned !== undefined) {
      throw new EfsApiError('BadRequest', 'ProvisionedThroughputInMibps needs ThroughputMode provisioned');
    }
    if (performanceMode === 'maxIO' && throughputMode === 'elastic') {
      throw new EfsApiError('BadRequest', 'Elastic throughput needs the generalPurpose performance mode');
    }
    const encrypted = body.Encrypted === true;
    const kmsKeyId = str(body, 'KmsKeyId');
    if (kmsKeyId !== undefined && !encrypted) {
      throw new EfsApiError('BadRequest', 'KmsKeyId requires Encrypted to be true');
    }
    const fs: FileSystemRec = {
      fileSystemId: hexId('fs'),
      creationToken: token,
      createdAt: now,
      availableAt: now + this.stateDelayMs,
      performanceMode,
      throughputMode,
      ...(typeof provisioned === 'number' ? { provisionedThroughputInMibps: provisioned } : {}),
      encrypted,
      ...(encrypted
        ? { kmsKeyId: kmsKeyId ?? `arn:aws:kms:${this.region}:${this.ownerId}:key/${randomUUID()}` }
        : {}),
      tags: parseTags(body.Tags),
    };
    this.fss.set(fs.fileSystemId, fs);
    return { status: 201, body: this.fsJson(fs, now) };
  }

  private describeFs(q: Record<string, string>, now: number): Reply {
    let all = [...this.fss.values()].filter((f) => stateOf(f, now) !== 'gone');
    if (q.FileSystemId !== undefined) {
      const fs = this.findFs(q.FileSystemId, now);
      all = [fs];
    }
    if (q.CreationToken !== undefined) all = all.filter((f) => f.creationToken === q.CreationToken);
    const { items, next } = page(all, q.MaxItems, q.Marker);
    return {
      status: 200,
      body: {
        ...(q.Marker === undefined ? {} : { Marker: q.Marker }),
        FileSystems: items.map((f) => this.fsJson(f, now)),
        ...(next === undefined ? {} : { NextMarker: next }),
      },
    };
  }

  private deleteFs(id: string, now: number): Reply {
    const fs = this.findFs(id, now);
    const inUse = [...this.mts.values()].some((m) => m.fileSystemId === id && stateOf(m, now) !== 'gone');
    if (inUse) {
      throw new EfsApiError('FileSystemInUse', `File system '${id}' has mount targets created in it`);
    }
    if (fs.deleteRequestedAt === undefined) {
      fs.deleteRequestedAt = now;
      fs.goneAt = now + this.stateDelayMs;
      for (const ap of this.aps.values()) {
        if (ap.fileSystemId === id && ap.deleteRequestedAt === undefined) {
          ap.deleteRequestedAt = now;
          ap.goneAt = fs.goneAt;
        }
      }
    }
    return { status: 204 };
  }

  private findFs(id: string, now: number): FileSystemRec {
    const fs = this.fss.get(id);
    if (!fs || stateOf(fs, now) === 'gone') {
      throw new EfsApiError('FileSystemNotFound', `File system '${id}' does not exist.`);
    }
    return fs;
  }

  private liveMountTargets(fileSystemId: string, now: number): MountTargetRec[] {
    return [...this.mts.values()].filter(
      (m) => m.fileSystemId === fileSystemId && stateOf(m, now) !== 'gone',
    );
  }

  private fsJson(f: FileSystemRec, now: number): Json {
    const name = nameTag(f.tags);
    return {
      OwnerId: this.ownerId,
      CreationToken: f.creationToken,
      FileSystemId: f.fileSystemId,
      FileSystemArn: this.fsArn(f.fileSystemId),
      CreationTime: f.createdAt / 1000,
      LifeCycleState: stateOf(f, now),
      ...(name === undefined ? {} : { Name: name }),
      NumberOfMountTargets: this.liveMountTargets(f.fileSystemId, now).length,
      SizeInBytes: {
        Value: 6144,
        Timestamp: now / 1000,
        ValueInIA: 0,
        ValueInStandard: 6144,
        ValueInArchive: 0,
      },
      PerformanceMode: f.performanceMode,
      Encrypted: f.encrypted,
      ...(f.kmsKeyId === undefined ? {} : { KmsKeyId: f.kmsKeyId }),
      ThroughputMode: f.throughputMode,
      ...(f.provisionedThroughputInMibps === undefined
        ? {}
        : { ProvisionedThroughputInMibps: f.provisionedThroughputInMibps }),
      Tags: f.tags,
      FileSystemProtection: { ReplicationOverwriteProtection: 'ENABLED' },
    };
  }

  private fsArn(id: string): string {
    return `arn:aws:elasticfilesystem:${this.region}:${this.ownerId}:file-system/${id}`;
  }

  private fsView(f: FileSystemRec, now: number): FakeFileSystem {
    return {
      fileSystemId: f.fileSystemId,
      fileSystemArn: this.fsArn(f.fileSystemId),
      creationToken: f.creationToken,
      state: stateOf(f, now) as EfsLifeCycleState,
      performanceMode: f.performanceMode,
      throughputMode: f.throughputMode,
      ...(f.provisionedThroughputInMibps === undefined
        ? {}
        : { provisionedThroughputInMibps: f.provisionedThroughputInMibps }),
      encrypted: f.encrypted,
      ...(f.kmsKeyId === undefined ? {} : { kmsKeyId: f.kmsKeyId }),
      tags: tagRecord(f.tags),
      createdAt: new Date(f.createdAt),
      numberOfMountTargets: this.liveMountTargets(f.fileSystemId, now).length,
    };
  }

  // --- mount targets ---------------------------------------------------------------------------

  private allocateIp(): string {
    const n = this.nextHost++;
    return `10.0.${Math.floor(n / 250)}.${(n % 250) + 4}`;
  }

  private createMt(body: Json, now: number): Reply {
    const fsId = str(body, 'FileSystemId', true) as string;
    const subnetId = str(body, 'SubnetId', true) as string;
    const fs = this.findFs(fsId, now);
    const fsState = stateOf(fs, now);
    if (fsState !== 'available') {
      throw new EfsApiError('IncorrectFileSystemLifeCycleState', `File system '${fsId}' is ${fsState}`);
    }
    const subnet = this.network.subnet(subnetId);
    if (!subnet) throw new EfsApiError('SubnetNotFound', `The subnet ID '${subnetId}' does not exist`);
    const groups = body.SecurityGroups ?? [subnet.defaultSecurityGroup];
    if (!Array.isArray(groups) || !groups.every((g): g is string => typeof g === 'string')) {
      throw new EfsApiError('BadRequest', 'SecurityGroups must be a list of strings');
    }
    if (groups.length > 5) throw new EfsApiError('SecurityGroupLimitExceeded', 'At most 5 security groups');
    // EFS: "one of the specified security groups doesn't exist in the subnet's VPC".
    const badGroup = groups.find((g) => this.network.securityGroup(g)?.vpcId !== subnet.vpcId);
    if (badGroup !== undefined) {
      throw new EfsApiError(
        'SecurityGroupNotFound',
        `The security group '${badGroup}' does not exist in VPC '${subnet.vpcId}'`,
      );
    }
    for (const other of this.liveMountTargets(fsId, now)) {
      if (other.subnet.vpcId !== subnet.vpcId) {
        throw new EfsApiError(
          'MountTargetConflict',
          `File system '${fsId}' has mount targets in another VPC`,
        );
      }
      if (other.subnet.availabilityZone === subnet.availabilityZone) {
        throw new EfsApiError(
          'MountTargetConflict',
          `mount target already exists in this AZ (${subnet.availabilityZone}): ${other.mountTargetId}`,
        );
      }
    }
    const ip = str(body, 'IpAddress') ?? (subnet.ip || this.allocateIp());
    const mt: MountTargetRec = {
      mountTargetId: hexId('fsmt'),
      fileSystemId: fsId,
      subnet,
      ipAddress: ip,
      networkInterfaceId: hexId('eni'),
      securityGroups: [...groups],
      availableAt: now + this.stateDelayMs,
    };
    this.mts.set(mt.mountTargetId, mt);
    return { status: 200, body: this.mtJson(mt, now) };
  }

  private describeMt(q: Record<string, string>, now: number): Reply {
    const given = ['MountTargetId', 'FileSystemId', 'AccessPointId'].filter((k) => q[k] !== undefined);
    if (given.length !== 1) {
      throw new EfsApiError(
        'BadRequest',
        'Specify exactly one of MountTargetId, FileSystemId or AccessPointId',
      );
    }
    let all: MountTargetRec[];
    if (q.MountTargetId !== undefined) all = [this.findMt(q.MountTargetId, now)];
    else if (q.FileSystemId !== undefined) {
      this.findFs(q.FileSystemId, now);
      all = this.liveMountTargets(q.FileSystemId, now);
    } else {
      const ap = this.findAp(q.AccessPointId ?? '', now);
      all = this.liveMountTargets(ap.fileSystemId, now);
    }
    const { items, next } = page(all, q.MaxItems, q.Marker);
    return {
      status: 200,
      body: {
        ...(q.Marker === undefined ? {} : { Marker: q.Marker }),
        MountTargets: items.map((m) => this.mtJson(m, now)),
        ...(next === undefined ? {} : { NextMarker: next }),
      },
    };
  }

  private deleteMt(id: string, now: number): Reply {
    const mt = this.findMt(id, now);
    if (mt.deleteRequestedAt === undefined) {
      mt.deleteRequestedAt = now;
      mt.goneAt = now + this.stateDelayMs;
    }
    return { status: 204 };
  }

  private mtSecurityGroups(id: string, now: number): Reply {
    const mt = this.findMt(id, now);
    const state = stateOf(mt, now);
    if (state !== 'available') {
      throw new EfsApiError('IncorrectMountTargetState', `Mount target '${id}' is ${state}`);
    }
    return { status: 200, body: { SecurityGroups: mt.securityGroups } };
  }

  private findMt(id: string, now: number): MountTargetRec {
    const mt = this.mts.get(id);
    if (!mt || stateOf(mt, now) === 'gone') {
      throw new EfsApiError('MountTargetNotFound', `Mount target '${id}' does not exist.`);
    }
    return mt;
  }

  private mtJson(m: MountTargetRec, now: number): Json {
    return {
      OwnerId: this.ownerId,
      MountTargetId: m.mountTargetId,
      FileSystemId: m.fileSystemId,
      SubnetId: m.subnet.subnetId,
      LifeCycleState: stateOf(m, now),
      IpAddress: m.ipAddress,
      NetworkInterfaceId: m.networkInterfaceId,
      AvailabilityZoneId: m.subnet.availabilityZoneId,
      AvailabilityZoneName: m.subnet.availabilityZone,
      VpcId: m.subnet.vpcId,
    };
  }

  private mtView(m: MountTargetRec, now: number): FakeMountTarget {
    return {
      mountTargetId: m.mountTargetId,
      fileSystemId: m.fileSystemId,
      subnetId: m.subnet.subnetId,
      vpcId: m.subnet.vpcId,
      availabilityZone: m.subnet.availabilityZone,
      availabilityZoneId: m.subnet.availabilityZoneId,
      ipAddress: m.ipAddress,
      networkInterfaceId: m.networkInterfaceId,
      securityGroups: [...m.securityGroups],
      state: stateOf(m, now) as EfsLifeCycleState,
    };
  }

  // --- access points ---------------------------------------------------------------------------

  private createAp(body: Json, now: number): Reply {
    const token = str(body, 'ClientToken', true) as string;
    const fsId = str(body, 'FileSystemId', true) as string;
    const tags = parseTags(body.Tags);

    let posixUser: AccessPointRec['posixUser'];
    if (body.PosixUser !== undefined) {
      const p = body.PosixUser;
      if (!isRecord(p)) throw new EfsApiError('BadRequest', 'PosixUser must be an object');
      const secondary = p.SecondaryGids;
      if (secondary !== undefined && !Array.isArray(secondary)) {
        throw new EfsApiError('BadRequest', 'SecondaryGids must be a list');
      }
      posixUser = {
        Uid: nonNegativeInt(p.Uid, 'PosixUser.Uid'),
        Gid: nonNegativeInt(p.Gid, 'PosixUser.Gid'),
        ...(secondary === undefined
          ? {}
          : { SecondaryGids: secondary.map((g, i) => nonNegativeInt(g, `SecondaryGids[${i}]`)) }),
      };
    }

    let rootDirectory: AccessPointRec['rootDirectory'] = { Path: '/' };
    if (body.RootDirectory !== undefined) {
      const r = body.RootDirectory;
      if (!isRecord(r)) throw new EfsApiError('BadRequest', 'RootDirectory must be an object');
      const path = str(r, 'Path') ?? '/';
      if (!path.startsWith('/') || path.length > 100 || path.split('/').includes('..')) {
        throw new EfsApiError('BadRequest', `Invalid RootDirectory.Path '${path}'`);
      }
      rootDirectory = { Path: path };
      if (r.CreationInfo !== undefined) {
        const c = r.CreationInfo;
        if (!isRecord(c)) throw new EfsApiError('BadRequest', 'CreationInfo must be an object');
        const permissions = str(c, 'Permissions', true) as string;
        if (!/^[0-7]{3,4}$/.test(permissions)) {
          throw new EfsApiError('BadRequest', `Invalid CreationInfo.Permissions '${permissions}'`);
        }
        rootDirectory.CreationInfo = {
          OwnerUid: nonNegativeInt(c.OwnerUid, 'CreationInfo.OwnerUid'),
          OwnerGid: nonNegativeInt(c.OwnerGid, 'CreationInfo.OwnerGid'),
          Permissions: permissions,
        };
      }
    }

    const requestKey = JSON.stringify([fsId, posixUser, rootDirectory, tags]);
    const existing = [...this.aps.values()].find(
      (a) => a.clientToken === token && stateOf(a, now) !== 'gone',
    );
    if (existing) {
      if (existing.requestKey === requestKey) return { status: 200, body: this.apJson(existing, now) };
      throw new EfsApiError(
        'AccessPointAlreadyExists',
        `Access point '${existing.accessPointId}' already exists with client token '${token}'`,
        { AccessPointId: existing.accessPointId },
      );
    }

    const fs = this.findFs(fsId, now);
    const fsState = stateOf(fs, now);
    if (fsState !== 'available') {
      throw new EfsApiError('IncorrectFileSystemLifeCycleState', `File system '${fsId}' is ${fsState}`);
    }
    const count = [...this.aps.values()].filter(
      (a) => a.fileSystemId === fsId && stateOf(a, now) !== 'gone',
    ).length;
    if (count >= this.accessPointLimit) {
      throw new EfsApiError(
        'AccessPointLimitExceeded',
        `File system '${fsId}' already has ${count} access points (limit ${this.accessPointLimit})`,
      );
    }
    const ap: AccessPointRec = {
      accessPointId: hexId('fsap'),
      fileSystemId: fsId,
      clientToken: token,
      ...(posixUser === undefined ? {} : { posixUser }),
      rootDirectory,
      tags,
      requestKey,
      availableAt: now + this.stateDelayMs,
    };
    this.aps.set(ap.accessPointId, ap);
    return { status: 200, body: this.apJson(ap, now) };
  }

  private describeAp(q: Record<string, string>, now: number): Reply {
    if (q.AccessPointId !== undefined && q.FileSystemId !== undefined) {
      throw new EfsApiError('BadRequest', 'Specify AccessPointId or FileSystemId, not both');
    }
    let all: AccessPointRec[];
    if (q.AccessPointId !== undefined) all = [this.findAp(q.AccessPointId, now)];
    else {
      if (q.FileSystemId !== undefined) this.findFs(q.FileSystemId, now);
      all = [...this.aps.values()].filter(
        (a) =>
          stateOf(a, now) !== 'gone' && (q.FileSystemId === undefined || a.fileSystemId === q.FileSystemId),
      );
    }
    const { items, next } = page(all, q.MaxResults, q.NextToken);
    return {
      status: 200,
      body: {
        AccessPoints: items.map((a) => this.apJson(a, now)),
        ...(next === undefined ? {} : { NextToken: next }),
      },
    };
  }

  private deleteAp(id: string, now: number): Reply {
    const ap = this.findAp(id, now);
    if (ap.deleteRequestedAt === undefined) {
      ap.deleteRequestedAt = now;
      ap.goneAt = now + this.stateDelayMs;
    }
    return { status: 204 };
  }

  private findAp(id: string, now: number): AccessPointRec {
    const ap = this.aps.get(id);
    if (!ap || stateOf(ap, now) === 'gone') {
      throw new EfsApiError('AccessPointNotFound', `Access point '${id}' does not exist.`);
    }
    return ap;
  }

  private apArn(id: string): string {
    return `arn:aws:elasticfilesystem:${this.region}:${this.ownerId}:access-point/${id}`;
  }

  private apJson(a: AccessPointRec, now: number): Json {
    const name = nameTag(a.tags);
    return {
      ClientToken: a.clientToken,
      ...(name === undefined ? {} : { Name: name }),
      Tags: a.tags,
      AccessPointId: a.accessPointId,
      AccessPointArn: this.apArn(a.accessPointId),
      FileSystemId: a.fileSystemId,
      ...(a.posixUser === undefined ? {} : { PosixUser: a.posixUser }),
      RootDirectory: a.rootDirectory,
      OwnerId: this.ownerId,
      LifeCycleState: stateOf(a, now),
    };
  }

  private apView(a: AccessPointRec, now: number): FakeAccessPoint {
    const ci = a.rootDirectory.CreationInfo;
    return {
      accessPointId: a.accessPointId,
      accessPointArn: this.apArn(a.accessPointId),
      fileSystemId: a.fileSystemId,
      clientToken: a.clientToken,
      ...(a.posixUser === undefined
        ? {}
        : {
            posixUser: {
              uid: a.posixUser.Uid,
              gid: a.posixUser.Gid,
              ...(a.posixUser.SecondaryGids === undefined
                ? {}
                : { secondaryGids: [...a.posixUser.SecondaryGids] }),
            },
          }),
      rootDirectory: {
        path: a.rootDirectory.Path,
        ...(ci === undefined
          ? {}
          : { creationInfo: { ownerUid: ci.OwnerUid, ownerGid: ci.OwnerGid, permissions: ci.Permissions } }),
      },
      tags: tagRecord(a.tags),
      state: stateOf(a, now) as EfsLifeCycleState,
    };
  }
}
