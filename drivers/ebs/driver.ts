import { createHash } from 'node:crypto';
import {
  type AttachmentRecord,
  type AttachTarget,
  blockMountSpec,
  type CloudClients,
  type DoctorCheck,
  type Driver,
  type DriverContext,
  type Ec2Volume,
  type ExpandResult,
  type MountSpec,
  type ParsedOptions,
  type ProvisionResult,
  parseDuration,
  parseOptions,
  pollUntil,
  StowageError,
  totalRefs,
  type VolumeInput,
  type VolumeRecord,
} from '../../src/index.js';
import { DeviceAllocator } from './allocator.js';
import { findEbsDevice } from './devices.js';
import { EBS_OPTION_SPECS, type EbsConfig, type EbsOptions } from './options.js';

const IOPS_TYPES = new Set(['gp3', 'io1', 'io2']);
const MIN_SIZE: Record<string, number> = { gp3: 1, gp2: 1, io1: 4, io2: 4, st1: 125, sc1: 125, standard: 1 };
const NAME_ATTEMPTS = 3;
const GiB = 1024 ** 3;

/**
 * AWS EBS volumes: created (or adopted) in EC2, attached to this instance at first mount under a
 * device name from the allocator, formatted only when blank, detached after the last unmount.
 * A volume attached to another instance is never taken silently: only with preempt=true and only
 * when the state store shows that host has no mounts of it.
 */
export class EbsDriver implements Driver {
  readonly name = 'ebs';
  readonly scope = 'global' as const;
  readonly needsAttach = true;
  readonly attachesRemotely = true;
  readonly lazyUnmount = false;
  readonly optionSpecs = EBS_OPTION_SPECS;
  private readonly allocator = new DeviceAllocator();
  private readonly cloud: CloudClients;

  constructor(
    private readonly ctx: DriverContext,
    private readonly cfg: EbsConfig,
  ) {
    if (!ctx.cloud)
      throw new StowageError('INTERNAL', 'the ebs driver needs the AWS clients (runtime wiring)');
    this.cloud = ctx.cloud;
  }

  parseOptions(raw: Record<string, string>): ParsedOptions<Record<string, unknown>> {
    const lower = new Set(Object.keys(raw).map((k) => k.toLowerCase()));
    const fromExisting = ['snapshotid', 'snapshottag', 'volumeid'].some((k) => lower.has(k));
    const parsed = parseOptions<EbsOptions>(this.name, this.optionSpecs, raw, {
      type: this.cfg.defaultType,
      fsType: this.cfg.defaultFsType,
      snapshotTagName: 'Name',
      preempt: 'false',
      ...(fromExisting ? {} : { size: String(this.cfg.defaultSizeGiB) }),
    });
    const o = parsed.values;
    const given = new Set(parsed.given);
    const bad = (msg: string) => new StowageError('INVALID_ARGUMENT', `driver ebs: ${msg}`);
    const sources = (['snapshotId', 'snapshotTag', 'volumeId'] as const).filter((k) => o[k] !== undefined);
    if (sources.length > 1) throw bad(`give only one of ${sources.join(', ')}`);
    if (o.volumeId !== undefined) {
      const shaping = [
        'size',
        'type',
        'iops',
        'throughput',
        'encrypted',
        'kmsKeyId',
        'availabilityZone',
        'tags',
      ].filter((k) => given.has(k));
      if (shaping.length > 0)
        throw bad(`volumeId adopts an existing volume as it is; ${shaping.join(', ')} cannot be set`);
    }
    if (o.iops !== undefined && !IOPS_TYPES.has(o.type))
      throw bad(`iops cannot be set for type ${o.type} (only gp3, io1, io2)`);
    if ((o.type === 'io1' || o.type === 'io2') && o.iops === undefined && o.volumeId === undefined) {
      throw bad(`type ${o.type} needs iops`);
    }
    if (o.type === 'gp3' && o.iops !== undefined && (o.iops < 3000 || o.iops > 16000)) {
      throw bad(`iops=${o.iops} is outside gp3's 3000-16000`);
    }
    if (o.throughput !== undefined && o.type !== 'gp3')
      throw bad(`throughput can only be set for gp3, not ${o.type}`);
    if (o.kmsKeyId !== undefined && o.encrypted === false) throw bad('kmsKeyId needs encrypted=true');
    if (o.size !== undefined && o.size < (MIN_SIZE[o.type] ?? 1)) {
      throw bad(`size=${o.size} GiB is below the minimum of ${MIN_SIZE[o.type]} GiB for ${o.type}`);
    }
    return parsed as unknown as ParsedOptions<Record<string, unknown>>;
  }

  async provision(volume: VolumeInput): Promise<ProvisionResult> {
    const o = volume.options as unknown as EbsOptions;
    const { ec2 } = this.cloud;
    if (o.volumeId !== undefined) {
      const v = await ec2.describeVolume(o.volumeId);
      if (!v) throw new StowageError('NOT_FOUND', `EBS volume ${o.volumeId} does not exist in this region`);
      // Adopted data is kept unless the user asked for delete explicitly.
      const policy = volume.givenOptions.includes('onRemove') ? (o.onRemove ?? 'retain') : 'retain';
      return { adopted: true, removePolicy: policy, fields: fieldsOf(v) };
    }
    const az = o.availabilityZone ?? (await this.cloud.identity.identity()).availabilityZone;
    let snapshotId = o.snapshotId;
    if (o.snapshotTag !== undefined) {
      const snap = await ec2.findSnapshotByTag(o.snapshotTagName, o.snapshotTag);
      if (!snap)
        throw new StowageError('NOT_FOUND', `no snapshot has tag ${o.snapshotTagName}=${o.snapshotTag}`);
      snapshotId = snap.id;
    }
    if (snapshotId !== undefined) {
      const snap = await ec2.describeSnapshot(snapshotId);
      if (!snap) throw new StowageError('NOT_FOUND', `snapshot ${snapshotId} does not exist in this region`);
      if (o.size !== undefined && o.size < snap.sizeGiB) {
        throw new StowageError(
          'INVALID_ARGUMENT',
          `driver ebs: size=${o.size} GiB is below the snapshot's ${snap.sizeGiB} GiB; give at least that, or no size`,
        );
      }
    }
    const created = await ec2.createVolume({
      // Same volume record (name + creation time) -> same token: a retried or resumed Create gets
      // the same EC2 volume; a later Create of the same name after a Remove gets a new one.
      clientToken: createHash('sha256')
        .update(`stowage\0${volume.name}\0${volume.createdAt}`)
        .digest('hex')
        .slice(0, 64),
      type: o.type,
      availabilityZone: az,
      tags: { ...(o.tags ?? {}), Name: volume.name, 'stowage.io/volume': volume.name },
      ...(o.size !== undefined ? { sizeGiB: o.size } : {}),
      ...(o.iops !== undefined ? { iops: o.iops } : {}),
      ...(o.throughput !== undefined ? { throughput: o.throughput } : {}),
      // A KMS key implies encryption; EC2 refuses the key without Encrypted=true.
      ...(o.encrypted !== undefined || o.kmsKeyId !== undefined ? { encrypted: o.encrypted ?? true } : {}),
      ...(o.kmsKeyId !== undefined ? { kmsKeyId: o.kmsKeyId } : {}),
      ...(snapshotId !== undefined ? { snapshotId } : {}),
    });
    if (created.state === 'deleting' || created.state === 'deleted') {
      // The token was spent by an earlier attempt whose volume was deleted again.
      throw new StowageError(
        'CONFLICT',
        `an earlier attempt of this Create made EBS volume ${created.id}, which is ${created.state}; remove volume ${volume.name} and create it again`,
      );
    }
    try {
      const ready = await this.waitVolume(
        created.id,
        (v) => {
          if (v.state === 'available') return v;
          if (v.state === 'error')
            throw new StowageError('UNAVAILABLE', `EBS volume ${created.id} went into state error`);
          return undefined;
        },
        parseDuration(this.cfg.createTimeout),
        `EBS volume ${created.id} to become available`,
      );
      return { adopted: false, removePolicy: o.onRemove ?? 'delete', fields: fieldsOf(ready) };
    } catch (err) {
      // Never leak silently: undo the cloud call, or say loudly what is left behind.
      try {
        await ec2.deleteVolume(created.id);
      } catch (delErr) {
        this.ctx.log.error(
          { volume: volume.name, volumeId: created.id },
          'EBS volume left behind after a failed create',
        );
        throw new StowageError(
          'INTERNAL',
          `${(err as Error).message}; deleting ${created.id} failed too (${(delErr as Error).message}): delete it by hand`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** An interrupted Create: the EBS volume it noted (interim: kept, as before; see issue 12). */
  async abandon(volume: VolumeRecord): Promise<void> {
    this.ctx.log.warn({ volume: volume.name, fields: volume.fields }, 'interrupted create: nothing undone');
  }

  async destroy(volume: VolumeRecord): Promise<void> {
    if (typeof volume.fields.volumeId !== 'string') return; // its Create never got an EBS volume
    const id = volumeIdOf(volume);
    if (volume.removePolicy !== 'delete') {
      this.ctx.log.info({ volume: volume.name, volumeId: id }, 'EBS volume kept');
      return;
    }
    const v = await this.cloud.ec2.describeVolume(id);
    if (!v) return;
    const attached = v.attachments.filter((a) => a.state !== 'detached');
    if (attached.length > 0) {
      throw new StowageError(
        'IN_USE',
        `EBS volume ${id} is still attached to ${attached.map((a) => a.instanceId).join(', ')}; nothing was deleted`,
      );
    }
    await this.cloud.ec2.deleteVolume(id);
  }

  async attach(volume: VolumeRecord, target?: AttachTarget): Promise<{ device: string }> {
    const id = volumeIdOf(volume);
    const to = await this.instanceOf(target);
    const v = await this.cloud.ec2.describeVolume(id);
    if (!v) throw new StowageError('NOT_FOUND', `EBS volume ${id} of volume ${volume.name} no longer exists`);
    if (v.availabilityZone !== to.availabilityZone) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `volume ${volume.name} (${id}) is in ${v.availabilityZone} but ${to.label} is in ${to.availabilityZone}; EBS volumes attach only in their own zone`,
      );
    }
    const live = v.attachments.filter((a) => a.state !== 'detached');
    const other = live.find((a) => a.instanceId !== to.instanceId);
    if (other) await this.takeOver(volume, id, other.instanceId);
    const mine = live.find((a) => a.instanceId === to.instanceId && a.state !== 'detaching');
    if (!mine) return { device: await this.attachUnderFreshName(id, to.instanceId) };
    if (mine.state !== 'attached') await this.waitAttached(id, to.instanceId, mine.device);
    return { device: mine.device };
  }

  /** The attached disk shows up under the requested name, its sd/xvd twin or as an NVMe disk. */
  localDevice(volume: VolumeRecord, attachment: AttachmentRecord): Promise<string> {
    const id = volumeIdOf(volume);
    return pollUntil(() => findEbsDevice(this.cfg, id, attachment.device), {
      timeoutMs: this.ctx.timeouts.deviceWaitMs,
      initialDelayMs: 20,
      maxDelayMs: 1000,
      what: `the block device of ${id} (attached as ${attachment.device}) to appear`,
      hint: 'Neither the requested name nor an NVMe device with its serial showed up.',
    });
  }

  async detach(
    volume: VolumeRecord,
    _attachment: AttachmentRecord,
    target?: AttachTarget,
    opts: { force?: boolean } = {},
  ): Promise<void> {
    const id = volumeIdOf(volume);
    const { instanceId } = await this.instanceOf(target);
    const v = await this.cloud.ec2.describeVolume(id);
    if (!v?.attachments.some((a) => a.instanceId === instanceId && a.state !== 'detached')) return;
    await this.cloud.ec2.detachVolume(id, instanceId, opts.force ? { force: true } : undefined);
    await this.waitVolume(
      id,
      (x) =>
        x.attachments.some((a) => a.instanceId === instanceId && a.state !== 'detached') ? undefined : true,
      parseDuration(this.cfg.attachTimeout),
      `EBS volume ${id} to detach from ${instanceId}`,
    ).catch((err: unknown) => {
      if (err instanceof StowageError && err.code === 'NOT_FOUND') return true;
      throw err;
    });
  }

  mountSpec(volume: VolumeRecord, attachment: AttachmentRecord | undefined): MountSpec {
    return blockMountSpec(volume, attachment);
  }

  /**
   * ModifyVolume to the requested size rounded up to whole GiB, then a bounded wait until EC2
   * says `optimizing` (the new size is usable from then on; optimizing itself can take hours).
   * A modification still running from an earlier try is waited for, not started again; a volume
   * that is already that big is left alone.
   */
  async expand(volume: VolumeRecord, newSizeBytes: number): Promise<ExpandResult> {
    const id = volumeIdOf(volume);
    if (!Number.isSafeInteger(newSizeBytes) || newSizeBytes <= 0) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `cannot grow volume ${volume.name} to ${newSizeBytes} bytes`,
      );
    }
    const wanted = Math.ceil(newSizeBytes / GiB);
    const { ec2 } = this.cloud;
    const timeoutMs = parseDuration(this.cfg.modifyTimeout);
    const running = await ec2.describeVolumeModification(id);
    if (running?.state === 'modifying') await this.waitModified(volume, id, running.targetSizeGiB, timeoutMs);
    const v = await ec2.describeVolume(id);
    if (!v) throw new StowageError('NOT_FOUND', `EBS volume ${id} of volume ${volume.name} no longer exists`);
    let size = v.sizeGiB;
    if (size < wanted) {
      this.ctx.log.info({ volume: volume.name, volumeId: id, from: size, to: wanted }, 'growing EBS volume');
      await ec2.modifyVolume(id, wanted);
      await this.waitModified(volume, id, wanted, timeoutMs);
      size = wanted;
    }
    const fields = volume.fields.sizeGiB === size ? undefined : { ...volume.fields, sizeGiB: size };
    return { sizeBytes: size * GiB, ...(fields ? { fields } : {}) };
  }

  describe(volume: VolumeRecord): Record<string, unknown> {
    return {
      volumeId: volume.fields.volumeId,
      availabilityZone: volume.fields.availabilityZone,
      size: volume.fields.sizeGiB !== undefined ? `${volume.fields.sizeGiB}G` : undefined,
      type: volume.fields.type ?? volume.options.type,
      fsType: volume.options.fsType,
    };
  }

  async hostIdentity(): Promise<Record<string, unknown>> {
    const id = await this.cloud.identity.identity();
    return { instanceId: id.instanceId, availabilityZone: id.availabilityZone, region: id.region };
  }

  async doctor(): Promise<DoctorCheck[]> {
    try {
      const id = await this.cloud.identity.identity();
      const inst = await this.cloud.ec2.describeInstance(id.instanceId);
      return [
        { name: 'ebs: identity', ok: true, detail: `${id.instanceId} in ${id.availabilityZone}` },
        {
          name: 'ebs: EC2 API',
          ok: inst !== undefined,
          detail: inst ? `DescribeInstances sees ${inst.id}` : `EC2 does not know instance ${id.instanceId}`,
        },
      ];
    } catch (err) {
      return [{ name: 'ebs: AWS', ok: false, detail: (err as Error).message }];
    }
  }

  /** The EC2 instance of `target` (from its recorded identity, else EC2), or of this host. */
  private async instanceOf(
    target: AttachTarget | undefined,
  ): Promise<{ instanceId: string; availabilityZone: string; label: string }> {
    if (!target || target.host === this.ctx.host) {
      const me = await this.cloud.identity.identity();
      return { instanceId: me.instanceId, availabilityZone: me.availabilityZone, label: 'this host' };
    }
    const instanceId = target.identity.instanceId;
    if (typeof instanceId !== 'string') {
      throw new StowageError(
        'NOT_FOUND',
        `host ${target.host} has no EC2 instance id recorded; run stowage on it once (daemon or hosts register) so it registers itself`,
      );
    }
    const label = `host ${target.host} (${instanceId})`;
    const az = target.identity.availabilityZone;
    if (typeof az === 'string') return { instanceId, availabilityZone: az, label };
    const inst = await this.cloud.ec2.describeInstance(instanceId);
    if (!inst)
      throw new StowageError('NOT_FOUND', `EC2 does not know instance ${instanceId} of host ${target.host}`);
    return { instanceId, availabilityZone: inst.availabilityZone, label };
  }

  /** Another instance holds the volume: refuse, unless preempt and the store proves nobody uses it there. */
  private async takeOver(volume: VolumeRecord, id: string, instanceId: string): Promise<void> {
    const owner = (await this.ctx.state.hosts()).find((h) => h.identity.instanceId === instanceId);
    const active = owner
      ? (await this.ctx.state.mounts(volume.name))
          .filter((m) => m.host === owner.id)
          .reduce((n, m) => n + totalRefs(m), 0)
      : undefined;
    const desc =
      `volume ${volume.name} is attached to instance ${instanceId} ` +
      (owner
        ? `(host ${owner.id}) with ${active} active mount${active === 1 ? '' : 's'}`
        : '(not a stowage host)');
    if (volume.options.preempt !== true) {
      throw new StowageError(
        'IN_USE',
        `${desc}; release it there, or create the volume with preempt=true to take it over`,
      );
    }
    if (!owner) {
      throw new StowageError(
        'IN_USE',
        `${desc}; nothing proves it is unused there, so it is not force-detached`,
      );
    }
    if ((active ?? 0) > 0)
      throw new StowageError('IN_USE', `${desc}; preempt takes a volume only when nobody uses it`);
    this.ctx.log.warn(
      { volume: volume.name, volumeId: id, from: instanceId, fromHost: owner.id },
      'preempt: force-detaching from another host',
    );
    await this.cloud.ec2.detachVolume(id, instanceId, { force: true });
    await this.waitVolume(
      id,
      (v) =>
        v.attachments.some((a) => a.instanceId === instanceId && a.state !== 'detached') ? undefined : true,
      parseDuration(this.cfg.attachTimeout),
      `EBS volume ${id} to detach from ${instanceId}`,
    );
  }

  private async attachUnderFreshName(id: string, instanceId: string): Promise<string> {
    for (let attempt = 1; attempt <= NAME_ATTEMPTS; attempt++) {
      const inst = await this.cloud.ec2.describeInstance(instanceId);
      if (!inst) throw new StowageError('NOT_FOUND', `EC2 does not know instance ${instanceId}`);
      const name = this.allocator.allocate(instanceId, inst.devices);
      if (!name) {
        throw new StowageError(
          'UNAVAILABLE',
          `no free device name left on ${instanceId} (all in use or tainted by failed attaches)`,
        );
      }
      try {
        await this.cloud.ec2.attachVolume(id, instanceId, name);
      } catch (err) {
        if (
          err instanceof StowageError &&
          err.code === 'INVALID_ARGUMENT' &&
          /in use|already/i.test(err.message)
        ) {
          this.allocator.taint(instanceId, name); // taken behind our back: never again, try the next
          continue;
        }
        this.allocator.release(instanceId, name);
        throw err;
      }
      try {
        await this.waitAttached(id, instanceId, name);
        this.allocator.release(instanceId, name);
        return name;
      } catch (err) {
        // A stuck "attaching" must not be retried under the same name.
        this.allocator.taint(instanceId, name);
        await this.cloud.ec2.detachVolume(id, instanceId, { force: true }).catch(() => undefined);
        throw err;
      }
    }
    throw new StowageError(
      'UNAVAILABLE',
      `could not find a free device name on ${instanceId} after ${NAME_ATTEMPTS} tries`,
    );
  }

  /** Until the latest modification (to at least `sizeGiB`) is optimizing or completed. */
  private waitModified(volume: VolumeRecord, id: string, sizeGiB: number, timeoutMs: number): Promise<true> {
    return pollUntil(
      async () => {
        const m = await this.cloud.ec2.describeVolumeModification(id);
        if (!m || m.targetSizeGiB < sizeGiB) {
          throw new StowageError(
            'UNAVAILABLE',
            `EC2 shows no modification of ${id} (volume ${volume.name}) to ${sizeGiB} GiB; try again`,
          );
        }
        if (m.state === 'failed') {
          throw new StowageError(
            'UNAVAILABLE',
            `EC2 could not grow ${id} (volume ${volume.name}) to ${sizeGiB} GiB: ${m.statusMessage ?? 'modification failed'}`,
          );
        }
        return m.state === 'optimizing' || m.state === 'completed' ? true : undefined;
      },
      {
        timeoutMs,
        initialDelayMs: 50,
        maxDelayMs: 2000,
        what: `EBS volume ${id} (volume ${volume.name}) to reach ${sizeGiB} GiB`,
        hint: 'EC2 is still modifying it; try again later (ebs.modifyTimeout bounds this wait).',
      },
    );
  }

  private waitAttached(id: string, instanceId: string, name: string): Promise<unknown> {
    return this.waitVolume(
      id,
      (v) => {
        const a = v.attachments.find((x) => x.instanceId === instanceId);
        if (a?.state === 'attached') return true;
        if (!a || a.state === 'detached') {
          throw new StowageError(
            'UNAVAILABLE',
            `the attachment of ${id} to ${instanceId} disappeared while attaching`,
          );
        }
        return undefined;
      },
      parseDuration(this.cfg.attachTimeout),
      `EBS volume ${id} to attach to ${instanceId} as ${name}`,
    );
  }

  private waitVolume<T>(
    id: string,
    check: (v: Ec2Volume) => T | undefined,
    timeoutMs: number,
    what: string,
  ): Promise<T> {
    return pollUntil(
      async () => {
        const v = await this.cloud.ec2.describeVolume(id);
        if (!v) throw new StowageError('NOT_FOUND', `EBS volume ${id} disappeared`);
        return check(v);
      },
      { timeoutMs, initialDelayMs: 50, maxDelayMs: 2000, what },
    );
  }
}

function volumeIdOf(volume: VolumeRecord): string {
  const id = volume.fields.volumeId;
  if (typeof id !== 'string')
    throw new StowageError('INTERNAL', `volume ${volume.name} has no EBS volume id recorded`);
  return id;
}

function fieldsOf(v: Ec2Volume): Record<string, unknown> {
  return {
    volumeId: v.id,
    availabilityZone: v.availabilityZone,
    sizeGiB: v.sizeGiB,
    type: v.type,
    ...(v.snapshotId ? { snapshotId: v.snapshotId } : {}),
  };
}
