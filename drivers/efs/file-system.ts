import {
  type DriverContext,
  type EfsApi,
  isStowageError,
  pollUntil,
  type VolumeInput,
} from '../../src/index.js';
import type { EfsOptions } from './options.js';

export const VOLUME_TAG = 'stowage.io/volume';

const POLL = { initialDelayMs: 100, maxDelayMs: 5000 };

/**
 * The file system a volume creates for itself (createFileSystem=true) and its mount targets. Each
 * step is noted in the volume's record before it is taken, so that an interrupted Create is either
 * finished by the next Create (the creation token makes CreateFileSystem answer the same file
 * system again; existing mount targets are kept) or undone by `deleteOwnFileSystem`.
 */
export class OwnFileSystems {
  constructor(
    private readonly efs: EfsApi,
    private readonly log: DriverContext['log'],
    private readonly timeoutMs: number,
  ) {}

  /** Creates (or finds again) the file system and a mount target per subnet; returns the fields to record. */
  async create(
    volume: VolumeInput,
    o: EfsOptions,
    subnets: string[],
    creationToken: string,
  ): Promise<Record<string, unknown>> {
    await volume.note({ fileSystemToken: creationToken });
    const fs = await this.efs.createFileSystem({
      creationToken,
      ...(o.performanceMode ? { performanceMode: o.performanceMode } : {}),
      ...(o.throughputMode ? { throughputMode: o.throughputMode } : {}),
      ...(o.provisionedThroughput !== undefined
        ? { provisionedThroughputMibps: o.provisionedThroughput }
        : {}),
      ...(o.encrypted !== undefined || o.kmsKeyId !== undefined ? { encrypted: o.encrypted ?? true } : {}),
      ...(o.kmsKeyId ? { kmsKeyId: o.kmsKeyId } : {}),
      tags: { Name: volume.name, [VOLUME_TAG]: volume.name },
    });
    await volume.note({ fileSystemId: fs.id, createdFileSystem: true });
    await pollUntil(
      async () => ((await this.efs.describeFileSystem(fs.id))?.state === 'available' ? true : undefined),
      { timeoutMs: this.timeoutMs, ...POLL, what: `EFS file system ${fs.id} to become available` },
    );
    // Only the security groups the user names: stowage never opens anything itself.
    const made = [...((volume.noted.mountTargetIds as string[] | undefined) ?? [])];
    const existing = await this.efs.describeMountTargets(fs.id);
    for (const subnet of subnets) {
      if (existing.some((m) => m.subnetId === subnet)) continue;
      const mt = await this.efs.createMountTarget(fs.id, subnet, o.securityGroups ?? []);
      made.push(mt.id);
      await volume.note({ mountTargetIds: made });
    }
    await pollUntil(
      async () => {
        const mts = await this.efs.describeMountTargets(fs.id);
        return mts.length >= subnets.length && mts.every((m) => m.state === 'available') ? true : undefined;
      },
      { timeoutMs: this.timeoutMs, ...POLL, what: `the mount targets of ${fs.id} to become available` },
    );
    return { fileSystemId: fs.id, createdFileSystem: true };
  }

  /** The file system a Create with this token made, if EFS still has it (for a crash before its id was noted). */
  async findByToken(creationToken: string): Promise<string | undefined> {
    return (await this.efs.findFileSystemByCreationToken(creationToken))?.id;
  }

  /**
   * Deletes a file system stowage made: its mount targets first (EFS refuses a file system that has
   * any), waiting (bounded) until they are gone. Already gone is success.
   */
  async deleteOwnFileSystem(fsId: string): Promise<void> {
    const described = await this.orGone(() => this.efs.describeFileSystem(fsId));
    if (!described) return;
    if (described.state === 'creating') {
      await pollUntil(
        async () => ((await this.efs.describeFileSystem(fsId))?.state ?? 'gone') !== 'creating' || undefined,
        {
          timeoutMs: this.timeoutMs,
          ...POLL,
          what: `EFS file system ${fsId} to finish creating before it is deleted`,
        },
      );
    }
    const targets = (await this.orGone(() => this.efs.describeMountTargets(fsId))) ?? [];
    for (const mt of targets) await this.efs.deleteMountTarget(mt.id);
    await pollUntil(
      async () =>
        ((await this.orGone(() => this.efs.describeMountTargets(fsId))) ?? []).length === 0
          ? true
          : undefined,
      { timeoutMs: this.timeoutMs, ...POLL, what: `the mount targets of ${fsId} to be deleted` },
    );
    await this.efs.deleteFileSystem(fsId);
    this.log.info(
      { fileSystemId: fsId, mountTargetIds: targets.map((m) => m.id) },
      'EFS file system deleted',
    );
  }

  /** The mount targets a file system has now (for naming what is left behind); [] when unknown. */
  async mountTargetIds(fsId: string): Promise<string[]> {
    try {
      return (await this.efs.describeMountTargets(fsId)).map((m) => m.id);
    } catch {
      return [];
    }
  }

  private async orGone<T>(fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      if (isStowageError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }
}
