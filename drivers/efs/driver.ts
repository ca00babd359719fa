import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import {
  type DoctorCheck,
  type Driver,
  type DriverContext,
  type EfsApi,
  type IdentitySource,
  type MountSpec,
  type ParsedOptions,
  type ProvisionResult,
  parseDuration,
  parseOptions,
  pollUntil,
  provisionDir,
  removeDir,
  type ShareLocation,
  StowageError,
  type VolumeInput,
  type VolumeRecord,
} from '../../src/index.js';
import { EFS_OPTION_SPECS, type EfsConfig, type EfsOptions, FS_CREATION_OPTIONS } from './options.js';

const VERSION_KEYS = ['vers', 'nfsvers'];

/**
 * AWS EFS, NFSv4.1 underneath: a subdirectory (or an access point) per volume on a file system,
 * mounted through the mount target in this host's availability zone. Provisioning, mounting,
 * deadlines and remove policies are the NFS share operations of the core; this driver adds what
 * EFS needs around them: finding the mount target, access points, and optionally the file system
 * and its mount targets themselves.
 */
export class EfsDriver implements Driver {
  readonly name = 'efs';
  readonly scope = 'global' as const;
  readonly needsAttach = false;
  readonly lazyUnmount = true;
  readonly optionSpecs = EFS_OPTION_SPECS;
  private readonly efs: EfsApi;
  private readonly identity: IdentitySource;

  constructor(
    private readonly ctx: DriverContext,
    private readonly cfg: EfsConfig,
  ) {
    if (!ctx.cloud?.efs)
      throw new StowageError('INTERNAL', 'the efs driver needs the AWS clients (runtime wiring)');
    this.efs = ctx.cloud.efs;
    this.identity = ctx.cloud.identity;
  }

  parseOptions(raw: Record<string, string>): ParsedOptions<Record<string, unknown>> {
    const parsed = parseOptions<EfsOptions>(this.name, this.optionSpecs, raw, {
      basePath: '/',
      accessPoint: 'none',
      directoryPerms: '0755',
      encryptInTransit: 'false',
      onRemove: this.cfg.onRemove,
      createFileSystem: 'false',
      mountTimeout: this.cfg.mountTimeout,
    });
    const o = parsed.values;
    const given = new Set(parsed.given);
    const bad = (msg: string) => new StowageError('INVALID_ARGUMENT', `driver efs: ${msg}`);
    if (!o.createFileSystem && !o.fileSystemId && this.cfg.fileSystemId)
      o.fileSystemId = this.cfg.fileSystemId;
    if (o.createFileSystem) {
      if (given.has('fileSystemId'))
        throw bad('give either fileSystemId (use an existing one) or createFileSystem=true, not both');
      delete o.fileSystemId;
    } else {
      if (!o.fileSystemId)
        throw bad(
          'no file system: give -o fileSystemId=fs-…, set efs.fileSystemId in the config, or createFileSystem=true',
        );
      const stray = FS_CREATION_OPTIONS.filter((k) => given.has(k));
      if (stray.length > 0) throw bad(`${stray.join(', ')} only apply with createFileSystem=true`);
    }
    if (o.kmsKeyId !== undefined && o.encrypted === false) throw bad('kmsKeyId needs encrypted=true');
    if (o.accessPoint.startsWith('fsap-') && given.has('subdir')) {
      throw bad('an existing access point has its own root directory; subdir cannot be set with it');
    }
    if ((o.mountOptions ?? []).some((m) => VERSION_KEYS.includes(m.split('=')[0]!.toLowerCase()))) {
      throw bad('EFS speaks NFSv4.1 only; leave nfsvers/vers out of mountOptions');
    }
    return parsed as unknown as ParsedOptions<Record<string, unknown>>;
  }

  async provision(volume: VolumeInput): Promise<ProvisionResult> {
    const o = volume.options as unknown as EfsOptions;
    const fields: Record<string, unknown> = { basePath: o.basePath };
    const fsId = o.fileSystemId;
    if (o.createFileSystem) {
      Object.assign(fields, await this.createFileSystem(volume, o));
      const created = fields.fileSystemId as string;
      try {
        return await this.provisionOn(volume, o, created, fields);
      } catch (err) {
        // Never leave a billed file system behind a failed Create: undo what this Create made.
        await this.deleteFileSystem(created).catch((undo: Error) =>
          this.ctx.log.error(
            { volume: volume.name, fileSystemId: created, err: undo.message },
            'file system left behind',
          ),
        );
        throw err;
      }
    }
    const fs = await this.efs.describeFileSystem(fsId!);
    if (!fs) throw new StowageError('NOT_FOUND', `EFS file system ${fsId} does not exist in this region`);
    fields.fileSystemId = fsId;
    return this.provisionOn(volume, o, fsId!, fields);
  }

  private async provisionOn(
    volume: VolumeInput,
    o: EfsOptions,
    fsId: string,
    fields: Record<string, unknown>,
  ): Promise<ProvisionResult> {
    const policy = o.onRemove;
    if (o.accessPoint.startsWith('fsap-')) {
      const ap = await this.efs.describeAccessPoint(o.accessPoint);
      if (!ap || ap.fileSystemId !== fsId) {
        throw new StowageError('NOT_FOUND', `access point ${o.accessPoint} does not exist on ${fsId}`);
      }
      return {
        adopted: true,
        removePolicy: 'retain',
        fields: { ...fields, accessPointId: ap.id, remotePath: ap.path },
      };
    }
    const subdir = (o.subdir ?? '{name}').replaceAll('{name}', volume.name);
    const remotePath = posix.join(o.basePath, subdir);
    Object.assign(fields, { subdir, remotePath });
    if (o.accessPoint === 'create') {
      // EFS makes the directory itself at the first mount through the access point.
      const ap = await this.efs.createAccessPoint({
        clientToken: token(volume).slice(0, 64),
        fileSystemId: fsId!,
        path: remotePath,
        uid: o.uid ?? 0,
        gid: o.gid ?? 0,
        permissions: o.directoryPerms.replace(/^0(?=[0-7]{3,4}$)/, ''),
        tags: { Name: volume.name, 'stowage.io/volume': volume.name },
      });
      return {
        adopted: false,
        removePolicy: policy,
        fields: { ...fields, accessPointId: ap.id, createdAccessPoint: true },
      };
    }
    const target = await this.mountTarget({ ...o, fileSystemId: fsId }, fields);
    Object.assign(fields, { mountTargets: { [target.az]: target.ip } });
    const dir = {
      mode: o.directoryPerms,
      ...(o.uid !== undefined ? { uid: o.uid } : {}),
      ...(o.gid !== undefined ? { gid: o.gid } : {}),
    };
    const made = await provisionDir(this.ctx, this.share(o, target.ip), subdir, dir, volume);
    if (made.adopted) {
      const kept = volume.givenOptions.includes('onRemove') ? policy : 'retain';
      this.ctx.log.warn({ volume: volume.name, remotePath, policy: kept }, 'adopting an existing directory');
      return { adopted: true, removePolicy: kept, fields };
    }
    return { adopted: false, removePolicy: policy, fields };
  }

  /** An interrupted Create: only the directory it noted making (the rest: TODO in this issue). */
  async abandon(volume: VolumeRecord): Promise<void> {
    if (volume.fields.madeDir !== true) return;
    await this.destroy({ ...volume, removePolicy: 'delete' });
  }

  /** Teardown in order: access point, directory, mount targets, file system (each only if ours). */
  async destroy(volume: VolumeRecord): Promise<void> {
    const o = volume.options as unknown as EfsOptions;
    const f = volume.fields;
    if (volume.removePolicy !== 'delete') {
      this.ctx.log.info({ volume: volume.name }, 'EFS data kept');
      return;
    }
    if (f.createdAccessPoint === true && typeof f.accessPointId === 'string') {
      await this.efs.deleteAccessPoint(f.accessPointId);
    }
    if (typeof f.subdir === 'string' && f.createdFileSystem !== true) {
      const target = await this.mountTarget({ ...o, fileSystemId: String(f.fileSystemId) }, f);
      await removeDir(this.ctx, this.share(o, target.ip), f.subdir, 'delete');
    }
    if (f.createdFileSystem === true && typeof f.fileSystemId === 'string')
      await this.deleteFileSystem(f.fileSystemId);
  }

  /** Mount targets first (EFS refuses to delete a file system that still has any), then the file system. */
  private async deleteFileSystem(fsId: string): Promise<void> {
    for (const mt of await this.efs.describeMountTargets(fsId).catch(() => []))
      await this.efs.deleteMountTarget(mt.id);
    await pollUntil(
      async () =>
        (await this.efs.describeMountTargets(fsId).catch(() => [])).length === 0 ? true : undefined,
      {
        timeoutMs: parseDuration(this.cfg.createTimeout),
        initialDelayMs: 100,
        maxDelayMs: 5000,
        what: `the mount targets of ${fsId} to be deleted`,
      },
    );
    await this.efs.deleteFileSystem(fsId);
  }

  async mountSpec(volume: VolumeRecord): Promise<MountSpec> {
    const o = volume.options as unknown as EfsOptions;
    const f = volume.fields;
    const fsId = String(f.fileSystemId);
    const target = await this.mountTarget({ ...o, fileSystemId: fsId }, f);
    const timeoutMs = parseDuration(o.mountTimeout);
    if (o.encryptInTransit || typeof f.accessPointId === 'string') {
      if (!(await this.ctx.mounter.hasTool('mount.efs'))) {
        throw new StowageError(
          'UNAVAILABLE',
          `volume ${volume.name} needs the EFS mount helper (mount -t efs) for ${o.encryptInTransit ? 'TLS' : 'its access point'}, ` +
            'which is not installed: install amazon-efs-utils on this host',
        );
      }
      const options = ['tls', `mounttargetip=${target.ip}`];
      if (typeof f.accessPointId === 'string') options.push(`accesspoint=${f.accessPointId}`);
      const path = typeof f.accessPointId === 'string' ? '/' : String(f.remotePath);
      return {
        kind: 'nfs',
        source: `${fsId}:${path}`,
        server: target.ip,
        fsType: 'efs',
        mountOptions: options,
        timeoutMs,
      };
    }
    return {
      kind: 'nfs',
      source: `${target.ip}:${String(f.remotePath)}`,
      server: target.ip,
      fsType: 'nfs4',
      mountOptions: this.mountOptions(o),
      timeoutMs,
    };
  }

  describe(volume: VolumeRecord): Record<string, unknown> {
    const f = volume.fields;
    return {
      fileSystemId: f.fileSystemId,
      remotePath: f.remotePath,
      ...(f.accessPointId ? { accessPointId: f.accessPointId } : {}),
      mountTargets: f.mountTargets,
    };
  }

  async doctor(): Promise<DoctorCheck[]> {
    const checks: DoctorCheck[] = [];
    const helper = await this.ctx.mounter.hasTool('mount.efs');
    checks.push({
      name: 'efs: mount helper',
      ok: true,
      detail: helper
        ? 'mount.efs found (TLS and access points available)'
        : 'mount.efs absent (plain NFS mounts only; install amazon-efs-utils for TLS)',
    });
    if (this.cfg.fileSystemId) {
      try {
        const fs = await this.efs.describeFileSystem(this.cfg.fileSystemId);
        checks.push({
          name: 'efs: file system',
          ok: fs !== undefined,
          detail: fs ? `${fs.id} ${fs.state}` : `${this.cfg.fileSystemId} not found`,
        });
      } catch (err) {
        checks.push({ name: 'efs: file system', ok: false, detail: (err as Error).message });
      }
    }
    return checks;
  }

  /** The mount target for this host: the override, the address recorded for its zone, or EFS's answer. */
  private async mountTarget(
    o: EfsOptions,
    fields: Record<string, unknown>,
  ): Promise<{ az: string; ip: string }> {
    const { availabilityZone: az } = await this.identity.identity();
    if (o.mountTargetIp) return { az, ip: o.mountTargetIp };
    const cached = (fields.mountTargets as Record<string, string> | undefined)?.[az];
    if (cached) return { az, ip: cached };
    const targets = await this.efs.describeMountTargets(o.fileSystemId!);
    const here = targets.find((t) => t.availabilityZone === az && t.state === 'available');
    if (!here) {
      const zones = targets.map((t) => t.availabilityZone).join(', ') || 'none';
      throw new StowageError(
        'UNAVAILABLE',
        `EFS file system ${o.fileSystemId} has no available mount target in ${az} (it has: ${zones}); ` +
          `create one in a subnet of ${az} (aws efs create-mount-target), or give -o mountTargetIp=`,
      );
    }
    return { az, ip: here.ip };
  }

  private async createFileSystem(volume: VolumeInput, o: EfsOptions): Promise<Record<string, unknown>> {
    // Everything that can be refused is checked before anything is created.
    const subnets = [...(o.subnets ?? [])];
    if (subnets.length === 0) {
      const here = (await this.identity.identity()).subnetId;
      if (!here)
        throw new StowageError(
          'INVALID_ARGUMENT',
          "driver efs: this host's subnet is unknown; give -o subnets=subnet-…",
        );
      subnets.push(here);
    }
    const fs = await this.efs.createFileSystem({
      creationToken: token(volume).slice(0, 64),
      ...(o.performanceMode ? { performanceMode: o.performanceMode } : {}),
      ...(o.throughputMode ? { throughputMode: o.throughputMode } : {}),
      ...(o.encrypted !== undefined || o.kmsKeyId !== undefined ? { encrypted: o.encrypted ?? true } : {}),
      ...(o.kmsKeyId ? { kmsKeyId: o.kmsKeyId } : {}),
      tags: { Name: volume.name, 'stowage.io/volume': volume.name },
    });
    const timeoutMs = parseDuration(this.cfg.createTimeout);
    await pollUntil(
      async () => ((await this.efs.describeFileSystem(fs.id))?.state === 'available' ? true : undefined),
      {
        timeoutMs,
        initialDelayMs: 100,
        maxDelayMs: 5000,
        what: `EFS file system ${fs.id} to become available`,
      },
    );
    // Only the security groups the user names: stowage never opens anything itself.
    const existing = await this.efs.describeMountTargets(fs.id);
    for (const subnet of subnets) {
      if (existing.some((m) => m.subnetId === subnet)) continue;
      await this.efs.createMountTarget(fs.id, subnet, o.securityGroups ?? []);
    }
    await pollUntil(
      async () => {
        const mts = await this.efs.describeMountTargets(fs.id);
        return mts.length >= subnets.length && mts.every((m) => m.state === 'available') ? true : undefined;
      },
      {
        timeoutMs,
        initialDelayMs: 100,
        maxDelayMs: 5000,
        what: `the mount targets of ${fs.id} to become available`,
      },
    );
    return { fileSystemId: fs.id, createdFileSystem: true };
  }

  private share(o: EfsOptions, ip: string): ShareLocation {
    return {
      server: ip,
      path: o.basePath,
      fsType: 'nfs4',
      mountOptions: this.mountOptions(o),
      timeoutMs: parseDuration(o.mountTimeout),
    };
  }

  /** The configured defaults (AWS's recommended ones), then the volume's over them. */
  private mountOptions(o: EfsOptions): string[] {
    const merged = new Map<string, string>();
    for (const opt of [...this.cfg.mountOptions, ...(o.mountOptions ?? [])])
      merged.set(opt.split('=')[0]!.toLowerCase(), opt);
    return [...merged.values()];
  }
}

function token(volume: VolumeInput): string {
  return createHash('sha256').update(`stowage\0efs\0${volume.name}\0${volume.createdAt}`).digest('hex');
}
