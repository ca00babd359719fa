import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import {
  type DoctorCheck,
  type Driver,
  type DriverContext,
  type EfsApi,
  type IdentitySource,
  isNfsVersionOption,
  isStowageError,
  type MountSpec,
  mergeMountOptions,
  type ParsedOptions,
  type ProvisionResult,
  parseDuration,
  parseOptions,
  provisionDir,
  recordedOptions,
  removeDir,
  type ShareLocation,
  StowageError,
  subdirFor,
  type VolumeInput,
  type VolumeRecord,
} from '../../src/index.js';
import { accessPointByToken, provideAccessPoint } from './access-point.js';
import type { EfsConfig } from './config.js';
import { OwnFileSystems } from './file-system.js';
import { checkMountTargetPlan } from './network-check.js';
import { EFS_OPTION_SPECS, type EfsOptions, FS_CREATION_OPTIONS } from './options.js';
import { removeEffect } from './remove-effect.js';

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
  private readonly ownFileSystems: OwnFileSystems;

  constructor(
    private readonly ctx: DriverContext,
    private readonly cfg: EfsConfig,
  ) {
    if (!ctx.cloud?.efs)
      throw new StowageError('INTERNAL', 'the efs driver needs the AWS clients (runtime wiring)');
    this.efs = ctx.cloud.efs;
    this.identity = ctx.cloud.identity;
    this.ownFileSystems = new OwnFileSystems(this.efs, ctx.log, parseDuration(cfg.createTimeout));
  }

  parseOptions(raw: Record<string, string>): ParsedOptions<EfsOptions> {
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
    if (o.throughputMode === 'provisioned' && o.provisionedThroughput === undefined)
      throw bad(
        'throughputMode=provisioned needs -o provisionedThroughput=<MiB/s> (EFS requires the amount)',
      );
    if (o.provisionedThroughput !== undefined && o.throughputMode !== 'provisioned')
      throw bad('provisionedThroughput only applies with throughputMode=provisioned');
    if (o.kmsKeyId !== undefined && o.encrypted === false) throw bad('kmsKeyId needs encrypted=true');
    if (o.accessPoint.startsWith('fsap-') && given.has('subdir')) {
      throw bad('an existing access point has its own root directory; subdir cannot be set with it');
    }
    if ((o.mountOptions ?? []).some(isNfsVersionOption)) {
      throw bad('EFS speaks NFSv4.1 only; leave nfsvers/vers out of mountOptions');
    }
    return parsed;
  }

  async provision(volume: VolumeInput): Promise<ProvisionResult> {
    const o = recordedOptions<EfsOptions>(volume);
    const fields: Record<string, unknown> = { basePath: o.basePath };
    if (o.createFileSystem) {
      const subnets = await this.subnetsFor(o);
      if (this.ctx.cloud?.network) {
        const needsHere = o.accessPoint === 'none' && !o.mountTargetIp;
        const hostZone = needsHere ? (await this.identity.identity()).availabilityZone : undefined;
        await checkMountTargetPlan(this.ctx.cloud.network, {
          subnets,
          securityGroups: o.securityGroups ?? [],
          ...(hostZone ? { hostZone } : {}),
        });
      }
      Object.assign(fields, await this.ownFileSystems.create(volume, o, subnets, token(volume)));
      return this.provisionOn(volume, o, fields.fileSystemId as string, fields);
    }
    const fsId = o.fileSystemId!;
    const fs = await this.efs.describeFileSystem(fsId);
    if (!fs) throw new StowageError('NOT_FOUND', `EFS file system ${fsId} does not exist in this region`);
    fields.fileSystemId = fsId;
    return this.provisionOn(volume, o, fsId, fields);
  }

  /** The subnets of the new mount targets: the given ones, else this host's. */
  private async subnetsFor(o: EfsOptions): Promise<string[]> {
    if (o.subnets && o.subnets.length > 0) return [...o.subnets];
    const here = (await this.identity.identity()).subnetId;
    if (!here)
      throw new StowageError(
        'INVALID_ARGUMENT',
        "driver efs: this host's subnet is unknown; give -o subnets=subnet-…",
      );
    return [here];
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
    const subdir = subdirFor(o.subdir, volume.name);
    const remotePath = posix.join(o.basePath, subdir);
    Object.assign(fields, { subdir, remotePath });
    if (o.accessPoint === 'create') {
      // EFS makes the directory itself at the first mount through the access point.
      const ap = await provideAccessPoint(
        this.efs,
        this.ctx.log,
        volume,
        {
          fileSystemId: fsId,
          path: remotePath,
          uid: o.uid ?? 0,
          gid: o.gid ?? 0,
          permissions: o.directoryPerms.replace(/^0(?=[0-7]{3,4}$)/, ''),
        },
        token(volume),
      );
      const out = { ...fields, accessPointId: ap.id, createdAccessPoint: true };
      if (!ap.reused) return { adopted: false, removePolicy: policy, fields: out };
      // Like an adopted directory: the data behind it is kept unless onRemove=delete is given again.
      const kept = volume.givenOptions.includes('onRemove') ? policy : 'retain';
      return { adopted: true, removePolicy: kept, fields: { ...out, reusedAccessPoint: true } };
    }
    const target = await this.mountTarget({ ...o, fileSystemId: fsId }, fields);
    Object.assign(fields, { mountTargets: { [target.az]: target.ip } });
    const dir = { mode: o.directoryPerms, uid: o.uid, gid: o.gid };
    const made = await provisionDir(this.ctx, this.share(o, target.ip), subdir, dir, volume);
    if (made.adopted) {
      const kept = volume.givenOptions.includes('onRemove') ? policy : 'retain';
      this.ctx.log.warn({ volume: volume.name, remotePath, policy: kept }, 'adopting an existing directory');
      return { adopted: true, removePolicy: kept, fields };
    }
    return { adopted: false, removePolicy: policy, fields };
  }

  /**
   * An interrupted or failed Create: deletes what its notes say it made, in teardown order (access
   * point, directory, mount targets, file system), never what it found. What was about to be made
   * but whose id was never noted is found by its token. Every step is tried; whatever could not be
   * deleted is logged at error level with its ids, and the Create's record keeps naming it.
   */
  async abandon(volume: VolumeRecord): Promise<void> {
    const o = recordedOptions<EfsOptions>(volume);
    const f = volume.fields;
    const failed: { what: string; ids: Record<string, unknown>; err: Error }[] = [];
    const step = async (what: string, ids: Record<string, unknown>, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (err) {
        if (!isStowageError(err, 'NOT_FOUND')) failed.push({ what, ids, err: err as Error });
      }
    };
    const fsId = typeof f.fileSystemId === 'string' ? f.fileSystemId : o.fileSystemId;
    if (typeof f.accessPointToken === 'string' && fsId) {
      const tok = f.accessPointToken;
      await step('access point', { accessPointId: f.accessPointId ?? `(client token ${tok})` }, async () => {
        const id =
          typeof f.accessPointId === 'string'
            ? f.accessPointId
            : await accessPointByToken(this.efs, fsId, tok);
        if (id) await this.efs.deleteAccessPoint(id);
      });
    }
    if (f.madeDir === true && typeof f.fileSystemToken !== 'string' && fsId) {
      const subdir = subdirFor(o.subdir, volume.name);
      await step('directory', { fileSystemId: fsId, subdir }, async () => {
        const target = await this.mountTarget({ ...o, fileSystemId: fsId }, f);
        await removeDir(this.ctx, this.share(o, target.ip), subdir, 'delete');
      });
    }
    if (typeof f.fileSystemToken === 'string') {
      const tok = f.fileSystemToken;
      let id =
        f.createdFileSystem === true && typeof f.fileSystemId === 'string' ? f.fileSystemId : undefined;
      await step('file system', { fileSystemId: id ?? `(creation token ${tok})` }, async () => {
        id ??= await this.ownFileSystems.findByToken(tok);
        if (id) await this.ownFileSystems.deleteOwnFileSystem(id);
      });
      const fsStep = failed.find((x) => x.what === 'file system');
      if (fsStep && id)
        fsStep.ids = { fileSystemId: id, mountTargetIds: await this.ownFileSystems.mountTargetIds(id) };
    }
    if (failed.length === 0) return;
    const left = Object.assign({}, ...failed.map((x) => x.ids));
    const reasons = failed.map((x) => `${x.what}: ${x.err.message}`).join('; ');
    this.ctx.log.error(
      { volume: volume.name, ...left, errors: reasons },
      'EFS resources of an unfinished Create could not be deleted and are left behind (billed); run Remove again or delete them with the AWS CLI',
    );
    const first = failed[0]!.err;
    throw new StowageError(
      isStowageError(first) ? first.code : 'INTERNAL',
      `could not delete what the unfinished Create of volume ${volume.name} made (${reasons}); left: ${JSON.stringify(left)}`,
      { cause: first },
    );
  }

  /** Teardown in order: access point, directory, mount targets, file system (each only if ours). */
  async destroy(volume: VolumeRecord): Promise<void> {
    const o = recordedOptions<EfsOptions>(volume);
    const f = volume.fields;
    if (volume.removePolicy !== 'delete') {
      this.ctx.log.info({ volume: volume.name, kept: removeEffect(volume) }, 'EFS data kept');
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
      await this.ownFileSystems.deleteOwnFileSystem(f.fileSystemId);
  }

  async mountSpec(volume: VolumeRecord): Promise<MountSpec> {
    const o = recordedOptions<EfsOptions>(volume);
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
      ...fileSystemFacts(volume),
      onRemove: removeEffect(volume),
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
    return mergeMountOptions(this.cfg.mountOptions, o.mountOptions ?? []);
  }
}

/** The idempotency token of this Create (64 hex: EFS's limit for creation and client tokens). */
function token(volume: VolumeInput): string {
  return createHash('sha256').update(`stowage\0efs\0${volume.name}\0${volume.createdAt}`).digest('hex');
}

/** What a file system stowage made for the volume was created with. */
function fileSystemFacts(volume: VolumeRecord): Record<string, unknown> {
  const o = recordedOptions<EfsOptions>(volume);
  if (volume.fields.createdFileSystem !== true) return {};
  return {
    throughputMode: o.throughputMode ?? 'bursting',
    ...(o.provisionedThroughput !== undefined ? { provisionedThroughputMibps: o.provisionedThroughput } : {}),
  };
}
