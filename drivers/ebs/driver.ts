import {
  type AttachmentRecord,
  type AttachRecords,
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
  pollUntil,
  recordedOptions,
  refuseTakeOverUnlessAllowed,
  StowageError,
  totalRefs,
  type VolumeInput,
  type VolumeRecord,
  type VolumeSizing,
} from '../../src/index.js';
import { DeviceAllocator } from './allocator.js';
import { EbsCloud } from './cloud.js';
import type { EbsConfig } from './config.js';
import { CREATE_TOKEN_TAG, createRequest, createToken, refusedVolume } from './create-request.js';
import { findEbsDevice } from './devices.js';
import { MIN_SIZE, parseEbsOptions } from './option-rules.js';
import { EBS_OPTION_SPECS, type EbsOptions, MAX_SIZE_GIB } from './options.js';
import { type Ec2Attachment, madeByStowage, notOurAttachment } from './ownership.js';
import { EbsSnapshots } from './snapshots.js';

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
  /** Whole GiB, as EC2 sizes volumes; the floor is the volume type's. */
  readonly sizing: VolumeSizing = {
    option: 'size',
    stepBytes: GiB,
    format: (bytes) => String(Math.ceil(bytes / GiB)),
    bytesOf: (o) => {
      const size = recordedOptions<EbsOptions>({ options: o }).size;
      return size === undefined ? undefined : size * GiB;
    },
    minBytes: (o) => (MIN_SIZE[recordedOptions<EbsOptions>({ options: o }).type] ?? 1) * GiB,
    maxBytes: MAX_SIZE_GIB * GiB,
    recordedBytes: (v) => (typeof v.fields.sizeGiB === 'number' ? v.fields.sizeGiB * GiB : undefined),
  };
  private readonly allocator = new DeviceAllocator();
  private readonly cloud: CloudClients;
  /** The EC2 operations with their waits; `cloud.ec2` directly only for plain reads. */
  private readonly ebs: EbsCloud;
  readonly snapshots: EbsSnapshots;

  constructor(
    private readonly ctx: DriverContext,
    private readonly cfg: EbsConfig,
  ) {
    if (!ctx.cloud)
      throw new StowageError('INTERNAL', 'the ebs driver needs the AWS clients (runtime wiring)');
    this.cloud = ctx.cloud;
    this.ebs = new EbsCloud(ctx.cloud.ec2);
    this.snapshots = new EbsSnapshots(ctx.cloud.ec2);
  }

  parseOptions(raw: Record<string, string>): ParsedOptions<EbsOptions> {
    return parseEbsOptions(raw, this.cfg);
  }

  async provision(volume: VolumeInput): Promise<ProvisionResult> {
    const o = recordedOptions<EbsOptions>(volume);
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
          // A size asked as a range (CSI's capacity_range) is then out of range.
          { details: { belowSourceSize: true } },
        );
      }
    }
    // Same volume record (name + creation time) -> same token: a retried or resumed Create gets
    // the same EC2 volume; a later Create of the same name after a Remove gets a new one. Noted
    // before the call, and carried as a tag: a Create killed before it could note the volume id
    // still leaves a volume that abandon finds.
    const clientToken = createToken(volume.name, volume.createdAt);
    await volume.note({ createToken: clientToken });
    const made = await this.ebs.create(
      createRequest(volume.name, o, az, clientToken, snapshotId),
      parseDuration(this.cfg.createTimeout),
      // From here on a failed or interrupted Create is undone by abandon (the core calls it).
      (volumeId) => volume.note({ volumeId, madeVolume: true }),
    );
    if (made.kind === 'refused') {
      // EC2 said no: nothing was made, so there is nothing for abandon to look for. (A timeout or
      // a 5xx leaves the token noted: the volume may exist, and abandon finds it by its tag.)
      await volume.note({ createToken: null });
      throw refusedVolume(made.error, volume.name, o, az);
    }
    if (made.kind === 'token-spent') {
      // The token was spent by an earlier attempt whose volume was deleted again.
      throw new StowageError(
        'CONFLICT',
        `an earlier attempt of this Create made EBS volume ${made.id}, which is ${made.state} now; create volume ${volume.name} again (a new Create makes a new EBS volume)`,
      );
    }
    return { adopted: false, removePolicy: o.onRemove ?? 'delete', fields: fieldsOf(made.volume) };
  }

  /**
   * Undoes an interrupted or failed Create: deletes the EBS volume it made (noted by id, or found
   * by its token tag when the Create died between CreateVolume and the note), after waiting out
   * `creating`. Never touches an adopted volume (adoption notes nothing) nor an attached one.
   */
  async abandon(volume: VolumeRecord): Promise<void> {
    const token = volume.fields.createToken;
    if (typeof token !== 'string') return; // CreateVolume was never called
    const since = Date.parse(volume.createdAt);
    const volumeId =
      volume.fields.madeVolume === true
        ? volumeIdOf(volume)
        : (await this.ebs.findCreated(CREATE_TOKEN_TAG, token, since))?.id;
    if (volumeId === undefined) return; // CreateVolume never got through
    const v = await this.ebs.describeCreated(
      volumeId,
      since,
      parseDuration(this.cfg.createTimeout),
      `EBS volume ${volumeId} (of the interrupted Create of ${volume.name}) to finish creating`,
    );
    if (!v || v.state === 'deleting' || v.state === 'deleted') return;
    const deleted = await this.ebs.deleteUnattached(v);
    if (deleted.kind === 'attached') {
      throw new StowageError(
        'IN_USE',
        `EBS volume ${volumeId}, made by the interrupted Create of ${volume.name}, is attached to ${deleted.instanceIds.join(', ')}; nothing was deleted: detach it, then remove ${volume.name} again`,
      );
    }
    this.ctx.log.warn({ volume: volume.name, volumeId }, 'interrupted create: its EBS volume deleted');
  }

  async destroy(volume: VolumeRecord): Promise<void> {
    if (typeof volume.fields.volumeId !== 'string') return; // its Create never got an EBS volume
    const id = volumeIdOf(volume);
    if (volume.removePolicy !== 'delete') {
      this.ctx.log.info({ volume: volume.name, volumeId: id }, 'EBS volume kept');
      return;
    }
    const v = await this.cloud.ec2.describeVolume(id);
    // Already on its way out (an earlier Remove whose reply or record was lost): done, as abandon.
    if (!v || v.state === 'deleting' || v.state === 'deleted') return;
    const deleted = await this.ebs.deleteUnattached(v);
    if (deleted.kind === 'attached') {
      throw new StowageError(
        'IN_USE',
        `EBS volume ${id} is still attached to ${deleted.instanceIds.join(', ')}; nothing was deleted`,
      );
    }
  }

  /**
   * `recorded` is what the store knows of the volume's attachments: an attachment EC2 shows that
   * the store does not record as stowage's is refused, never used (and so never detached later).
   */
  async attach(
    volume: VolumeRecord,
    target?: AttachTarget,
    recorded?: AttachRecords,
  ): Promise<{ device: string }> {
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
    if (other) await this.takeOver(volume, id, other, recorded?.before ?? []);
    // One that is being detached (or stuck `busy` at it) never becomes attached again: not waited for.
    const mine = live.find(
      (a) => a.instanceId === to.instanceId && a.state !== 'detaching' && a.state !== 'busy',
    );
    if (!mine) return { device: await this.attachUnderFreshName(id, to.instanceId, recorded) };
    const host = target?.host ?? this.ctx.host;
    if (
      !madeByStowage(
        mine,
        recorded?.before.find((r) => r.host === host),
      )
    ) {
      throw notOurAttachment(
        volume.name,
        id,
        mine,
        to.label === 'this host' ? ' (this host)' : ` (${to.label})`,
      );
    }
    if (mine.state !== 'attached')
      await this.ebs.waitAttached(id, to.instanceId, mine.device, parseDuration(this.cfg.attachTimeout));
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

  /**
   * Detaches only the attachment `attachment` names (the store's record of stowage's own): one that
   * someone else made to the instance is left as it is, whatever `force` says.
   */
  async detach(
    volume: VolumeRecord,
    attachment: AttachmentRecord,
    target?: AttachTarget,
    opts: { force?: boolean } = {},
  ): Promise<void> {
    const id = volumeIdOf(volume);
    const { instanceId } = await this.instanceOf(target);
    const v = await this.cloud.ec2.describeVolume(id);
    const a = v?.attachments.find((x) => x.instanceId === instanceId && x.state !== 'detached');
    if (!a) return;
    if (!madeByStowage(a, attachment)) {
      this.ctx.log.warn(
        { volume: volume.name, volumeId: id, instanceId, device: a.device, recorded: attachment.device },
        'EBS attachment not made by stowage: left attached, only the record dropped',
      );
      return;
    }
    await this.ebs.detach(id, instanceId, {
      ...(opts.force ? { force: true } : {}),
      timeoutMs: parseDuration(this.cfg.attachTimeout),
    });
  }

  mountSpec(volume: VolumeRecord, attachment: AttachmentRecord | undefined): MountSpec {
    return blockMountSpec(volume, attachment);
  }

  /**
   * Grows the EBS volume to the requested size rounded up to whole GiB (EbsCloud.grow: a bounded
   * wait until the new size is usable); a volume that is already that big is left alone.
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
    const grown = await this.ebs.grow(
      id,
      wanted,
      `volume ${volume.name}`,
      parseDuration(this.cfg.modifyTimeout),
    );
    if (grown.kind === 'volume-gone')
      throw new StowageError('NOT_FOUND', `EBS volume ${id} of volume ${volume.name} no longer exists`);
    const size = grown.sizeGiB;
    if (grown.fromGiB !== size) {
      this.ctx.log.info(
        { volume: volume.name, volumeId: id, from: grown.fromGiB, to: size },
        'EBS volume grown',
      );
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

  /**
   * Another instance holds the volume: refused unless the core's take-over rule allows it (preempt,
   * and the store proves nobody uses it there) and the store records that attachment as stowage's;
   * then force-detached from there.
   */
  private async takeOver(
    volume: VolumeRecord,
    id: string,
    other: Ec2Attachment,
    records: AttachmentRecord[],
  ): Promise<void> {
    const { instanceId } = other;
    const owner = (await this.ctx.state.hosts()).find((h) => h.identity.instanceId === instanceId);
    const active = owner
      ? (await this.ctx.state.mounts(volume.name))
          .filter((m) => m.host === owner.id)
          .reduce((n, m) => n + totalRefs(m), 0)
      : 0;
    refuseTakeOverUnlessAllowed(
      volume,
      owner
        ? {
            label: `instance ${instanceId} (host ${owner.id})`,
            activeMounts: active,
            use: active > 0 ? 'used' : 'unused',
          }
        : { label: `instance ${instanceId} (not a stowage host)`, use: 'unknown' },
    );
    // The rule refuses an instance that is no stowage host; were that to change, this still would.
    if (
      !owner ||
      !madeByStowage(
        other,
        records.find((r) => r.host === owner.id),
      )
    )
      throw notOurAttachment(volume.name, id, other, owner ? ` (host ${owner.id})` : '');
    this.ctx.log.warn(
      { volume: volume.name, volumeId: id, from: instanceId, fromHost: owner.id },
      'preempt: force-detaching from another host',
    );
    const detached = await this.ebs.detach(id, instanceId, {
      force: true,
      timeoutMs: parseDuration(this.cfg.attachTimeout),
    });
    if (detached.kind === 'volume-gone') throw new StowageError('NOT_FOUND', `EBS volume ${id} disappeared`);
  }

  private async attachUnderFreshName(
    id: string,
    instanceId: string,
    recorded: AttachRecords | undefined,
  ): Promise<string> {
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
        await recorded?.noteDevice(name); // first: an attach killed after the call is still ours
      } catch (err) {
        this.allocator.release(instanceId, name);
        throw err;
      }
      const attached = await this.ebs.attach(id, instanceId, name, parseDuration(this.cfg.attachTimeout));
      switch (attached.kind) {
        case 'attached':
          this.allocator.release(instanceId, name);
          return name;
        case 'device-name-in-use':
          this.allocator.taint(instanceId, name); // taken behind our back: never again, try the next
          continue;
        case 'refused':
          this.allocator.release(instanceId, name);
          throw attached.error;
        case 'stuck':
          this.allocator.taint(instanceId, name); // a stuck "attaching" must not be retried under it
          throw attached.error;
      }
    }
    throw new StowageError(
      'UNAVAILABLE',
      `could not find a free device name on ${instanceId} after ${NAME_ATTEMPTS} tries`,
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
