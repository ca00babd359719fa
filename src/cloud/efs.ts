import type { EFSClient } from '@aws-sdk/client-efs';
import { type ErrorCode, isStowageError, StowageError } from '../base/errors.js';
import { type AwsClientOptions, observeCalls, sdkClientConfig } from './client-options.js';
import { awsErrorName, fromAwsError } from './errors.js';

export interface EfsFileSystem {
  id: string;
  state: string;
  creationToken?: string;
}

export interface EfsMountTarget {
  id: string;
  fileSystemId: string;
  subnetId: string;
  availabilityZone: string;
  ip: string;
  state: string;
}

export interface EfsAccessPoint {
  id: string;
  fileSystemId: string;
  path: string;
  state: string;
  /** The ClientToken it was created with (idempotency: who made it). */
  clientToken?: string;
  /** The POSIX user every request through it acts as. */
  uid?: number;
  gid?: number;
  tags?: Record<string, string>;
}

export interface CreateFileSystemInput {
  creationToken: string;
  performanceMode?: string;
  throughputMode?: string;
  /** MiB/s, with throughputMode provisioned. */
  provisionedThroughputMibps?: number;
  encrypted?: boolean;
  kmsKeyId?: string;
  tags: Record<string, string>;
}

export interface CreateAccessPointInput {
  clientToken: string;
  fileSystemId: string;
  path: string;
  uid: number;
  gid: number;
  permissions: string;
  tags: Record<string, string>;
}

/** The narrow EFS seam. Errors are StowageErrors; NotFound on describe is undefined, on delete success. */
export interface EfsApi {
  describeFileSystem(id: string): Promise<EfsFileSystem | undefined>;
  /** The file system a CreateFileSystem with this token made, if any (not yet deleted). */
  findFileSystemByCreationToken(token: string): Promise<EfsFileSystem | undefined>;
  createFileSystem(input: CreateFileSystemInput): Promise<EfsFileSystem>;
  deleteFileSystem(id: string): Promise<void>;
  describeMountTargets(fileSystemId: string): Promise<EfsMountTarget[]>;
  createMountTarget(
    fileSystemId: string,
    subnetId: string,
    securityGroups: string[],
  ): Promise<EfsMountTarget>;
  deleteMountTarget(id: string): Promise<void>;
  createAccessPoint(input: CreateAccessPointInput): Promise<EfsAccessPoint>;
  describeAccessPoint(id: string): Promise<EfsAccessPoint | undefined>;
  /** Every access point of a file system (all pages), with tags and client tokens. */
  listAccessPoints(fileSystemId: string): Promise<EfsAccessPoint[]>;
  deleteAccessPoint(id: string): Promise<void>;
}

type Sdk = typeof import('@aws-sdk/client-efs');
type Loaded = { sdk: Sdk; client: EFSClient };

export type SdkEfsOptions = AwsClientOptions;

export class SdkEfs implements EfsApi {
  private loaded: Promise<Loaded> | undefined;

  constructor(private readonly opts: SdkEfsOptions) {}

  async describeFileSystem(id: string): Promise<EfsFileSystem | undefined> {
    return this.orUndefined(async () => {
      const out = await this.call(`DescribeFileSystems ${id}`, (c) =>
        c.client.send(new c.sdk.DescribeFileSystemsCommand({ FileSystemId: id })),
      );
      const fs = out.FileSystems?.[0];
      return fs?.FileSystemId ? toFs(fs) : undefined;
    });
  }

  async findFileSystemByCreationToken(token: string): Promise<EfsFileSystem | undefined> {
    const out = await this.call(`DescribeFileSystems CreationToken=${token}`, (c) =>
      c.client.send(new c.sdk.DescribeFileSystemsCommand({ CreationToken: token })),
    );
    const fs = out.FileSystems?.find((f) => f.CreationToken === token && f.LifeCycleState !== 'deleted');
    return fs?.FileSystemId ? toFs(fs) : undefined;
  }

  async createFileSystem(i: CreateFileSystemInput): Promise<EfsFileSystem> {
    try {
      const out = await this.call(`CreateFileSystem ${i.creationToken}`, (c) =>
        c.client.send(
          new c.sdk.CreateFileSystemCommand({
            CreationToken: i.creationToken,
            ...(i.performanceMode ? { PerformanceMode: i.performanceMode as never } : {}),
            ...(i.throughputMode ? { ThroughputMode: i.throughputMode as never } : {}),
            ...(i.provisionedThroughputMibps !== undefined
              ? { ProvisionedThroughputInMibps: i.provisionedThroughputMibps }
              : {}),
            ...(i.encrypted !== undefined ? { Encrypted: i.encrypted } : {}),
            ...(i.kmsKeyId ? { KmsKeyId: i.kmsKeyId } : {}),
            Tags: Object.entries(i.tags).map(([Key, Value]) => ({ Key, Value })),
          }),
        ),
      );
      return toFs(out);
    } catch (err) {
      // The same creation token again (a retried or resumed Create): the file system it made.
      const existing = (err as { cause?: { FileSystemId?: string } }).cause?.FileSystemId;
      if (existing && awsErrorName((err as { cause?: unknown }).cause) === 'FileSystemAlreadyExists') {
        const fs = await this.describeFileSystem(existing);
        if (fs) return fs;
      }
      throw err;
    }
  }

  async deleteFileSystem(id: string): Promise<void> {
    await this.ignoreNotFound(() =>
      this.call(`DeleteFileSystem ${id}`, (c) =>
        c.client.send(new c.sdk.DeleteFileSystemCommand({ FileSystemId: id })),
      ),
    );
  }

  async describeMountTargets(fileSystemId: string): Promise<EfsMountTarget[]> {
    const out = await this.call(`DescribeMountTargets ${fileSystemId}`, (c) =>
      c.client.send(new c.sdk.DescribeMountTargetsCommand({ FileSystemId: fileSystemId })),
    );
    return (out.MountTargets ?? []).map(toMountTarget);
  }

  async createMountTarget(
    fileSystemId: string,
    subnetId: string,
    securityGroups: string[],
  ): Promise<EfsMountTarget> {
    const out = await this.call(`CreateMountTarget ${fileSystemId} in ${subnetId}`, (c) =>
      c.client.send(
        new c.sdk.CreateMountTargetCommand({
          FileSystemId: fileSystemId,
          SubnetId: subnetId,
          ...(securityGroups.length ? { SecurityGroups: securityGroups } : {}),
        }),
      ),
    );
    return toMountTarget(out);
  }

  async deleteMountTarget(id: string): Promise<void> {
    await this.ignoreNotFound(() =>
      this.call(`DeleteMountTarget ${id}`, (c) =>
        c.client.send(new c.sdk.DeleteMountTargetCommand({ MountTargetId: id })),
      ),
    );
  }

  async createAccessPoint(i: CreateAccessPointInput): Promise<EfsAccessPoint> {
    const out = await this.call(`CreateAccessPoint on ${i.fileSystemId}`, (c) =>
      c.client.send(
        new c.sdk.CreateAccessPointCommand({
          ClientToken: i.clientToken,
          FileSystemId: i.fileSystemId,
          PosixUser: { Uid: i.uid, Gid: i.gid },
          RootDirectory: {
            Path: i.path,
            CreationInfo: { OwnerUid: i.uid, OwnerGid: i.gid, Permissions: i.permissions },
          },
          Tags: Object.entries(i.tags).map(([Key, Value]) => ({ Key, Value })),
        }),
      ),
    );
    return toAccessPoint(out);
  }

  async describeAccessPoint(id: string): Promise<EfsAccessPoint | undefined> {
    return this.orUndefined(async () => {
      const out = await this.call(`DescribeAccessPoints ${id}`, (c) =>
        c.client.send(new c.sdk.DescribeAccessPointsCommand({ AccessPointId: id })),
      );
      const ap = out.AccessPoints?.[0];
      return ap?.AccessPointId ? toAccessPoint(ap) : undefined;
    });
  }

  async listAccessPoints(fileSystemId: string): Promise<EfsAccessPoint[]> {
    const all: EfsAccessPoint[] = [];
    let next: string | undefined;
    // A bounded walk: EFS allows at most 10,000 access points per file system, 100 per page here.
    for (let pages = 0; pages < 101; pages++) {
      const out = await this.call(`DescribeAccessPoints FileSystemId=${fileSystemId}`, (c) =>
        c.client.send(
          new c.sdk.DescribeAccessPointsCommand({
            FileSystemId: fileSystemId,
            MaxResults: 100,
            ...(next ? { NextToken: next } : {}),
          }),
        ),
      );
      all.push(...(out.AccessPoints ?? []).filter((a) => a.AccessPointId).map(toAccessPoint));
      next = out.NextToken;
      if (!next) return all;
    }
    throw new StowageError('INTERNAL', `DescribeAccessPoints of ${fileSystemId} did not end after 101 pages`);
  }

  async deleteAccessPoint(id: string): Promise<void> {
    await this.ignoreNotFound(() =>
      this.call(`DeleteAccessPoint ${id}`, (c) =>
        c.client.send(new c.sdk.DeleteAccessPointCommand({ AccessPointId: id })),
      ),
    );
  }

  /** The SDK is loaded on first use: hosts without the efs driver never pay for it. */
  private load(): Promise<Loaded> {
    this.loaded ??= import('@aws-sdk/client-efs').then((sdk) => ({
      sdk,
      client: observeCalls(new sdk.EFSClient(sdkClientConfig(this.opts)), 'efs', this.opts.observe),
    }));
    return this.loaded;
  }

  private async call<T>(doing: string, fn: (c: Loaded) => Promise<T>): Promise<T> {
    try {
      return await fn(await this.load());
    } catch (err) {
      const name = awsErrorName(err);
      const code = name ? EFS_CODE_OF[name] : undefined;
      if (code && !(err instanceof StowageError)) {
        throw new StowageError(code, `${doing} failed: ${name}: ${(err as Error).message}`, {
          cause: err,
          details: { awsError: name },
        });
      }
      throw fromAwsError(err, doing);
    }
  }

  private async orUndefined<T>(fn: () => Promise<T | undefined>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      if (isStowageError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  private async ignoreNotFound(fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (!isStowageError(err, 'NOT_FOUND')) throw err;
    }
  }
}

/** EFS error names the shared AWS table does not know; the input was refused, nothing was made. */
const EFS_CODE_OF: Record<string, ErrorCode> = {
  ThroughputLimitExceeded: 'INVALID_ARGUMENT',
  InsufficientThroughputCapacity: 'UNAVAILABLE',
  UnsupportedAvailabilityZone: 'INVALID_ARGUMENT',
  AvailabilityZonesMismatch: 'INVALID_ARGUMENT',
};

interface RawFs {
  FileSystemId?: string;
  LifeCycleState?: string;
  CreationToken?: string;
}
function toFs(f: RawFs): EfsFileSystem {
  const out: EfsFileSystem = { id: f.FileSystemId ?? '', state: f.LifeCycleState ?? 'error' };
  if (f.CreationToken) out.creationToken = f.CreationToken;
  return out;
}

interface RawMt {
  MountTargetId?: string;
  FileSystemId?: string;
  SubnetId?: string;
  AvailabilityZoneName?: string;
  IpAddress?: string;
  LifeCycleState?: string;
}
function toMountTarget(m: RawMt): EfsMountTarget {
  return {
    id: m.MountTargetId ?? '',
    fileSystemId: m.FileSystemId ?? '',
    subnetId: m.SubnetId ?? '',
    availabilityZone: m.AvailabilityZoneName ?? '',
    ip: m.IpAddress ?? '',
    state: m.LifeCycleState ?? 'error',
  };
}

interface RawAp {
  AccessPointId?: string;
  FileSystemId?: string;
  RootDirectory?: { Path?: string };
  LifeCycleState?: string;
  ClientToken?: string;
  PosixUser?: { Uid?: number; Gid?: number };
  Tags?: { Key?: string; Value?: string }[];
}
function toAccessPoint(a: RawAp): EfsAccessPoint {
  const out: EfsAccessPoint = {
    id: a.AccessPointId ?? '',
    fileSystemId: a.FileSystemId ?? '',
    path: a.RootDirectory?.Path ?? '/',
    state: a.LifeCycleState ?? 'error',
  };
  if (a.ClientToken) out.clientToken = a.ClientToken;
  if (a.PosixUser?.Uid !== undefined) out.uid = a.PosixUser.Uid;
  if (a.PosixUser?.Gid !== undefined) out.gid = a.PosixUser.Gid;
  if (a.Tags) out.tags = Object.fromEntries(a.Tags.map((t) => [t.Key ?? '', t.Value ?? '']));
  return out;
}
