import { createHash } from 'node:crypto';
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
  isStowageError,
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
import { type Ec2Attachment, madeByStowage, notOurAttachment } from './ownership.js';

const IOPS_TYPES = new Set(['gp3', 'io1', 'io2']);
const MIN_SIZE: Record<string, number> = { gp3: 1, gp2: 1, io1: 4, io2: 4, st1: 125, sc1: 125, standard: 1 };
const NAME_ATTEMPTS = 3;
const GiB = 1024 ** 3;
/** Carries the Create's ClientToken: finds the volume an interrupted Create made before noting it. */
export const CREATE_TOKEN_TAG = 'stowage.io/create-token';
/**
 * How long after a Create EC2's reads may still miss the volume it made (eventual consistency):
 * within it, "not found" means "not yet"; after it, "gone".
 */
const CONSISTENCY_WINDOW_MS = 15_000;

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
    // Only the floors, which have not moved in years; the ceilings (gp3 IOPS went from 16,000 to
    // 80,000) are EC2's to enforce, and its refusal comes back as INVALID_ARGUMENT naming the value.
    if (o.type === 'gp3' && o.iops !== undefined && o.iops < 3000) {
      throw bad(`iops=${o.iops} is below gp3's minimum of 3000`);
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
    // Same volume record (name + creation time) -> same token: a retried or resumed Create gets
    // the same EC2 volume; a later Create of the same name after a Remove gets a new one. Noted
    // before the call, and carried as a tag: a Create killed before it could note the volume id
    // still leaves a volume that abandon finds.
    const clientToken = createToken(volume.name, volume.createdAt);
    await volume.note({ createToken: clientToken });
    const created = await ec2
      .createVolume({
        clientToken,
        type: o.type,
        availabilityZone: az,
        tags: {
          ...(o.tags ?? {}),
          Name: volume.name,
          'stowage.io/volume': volume.name,
          [CREATE_TOKEN_TAG]: clientToken,
        },
        ...(o.size !== undefined ? { sizeGiB: o.size } : {}),
        ...(o.iops !== undefined ? { iops: o.iops } : {}),
        ...(o.throughput !== undefined ? { throughput: o.throughput } : {}),
        // A KMS key implies encryption; EC2 refuses the key without Encrypted=true.
        ...(o.encrypted !== undefined || o.kmsKeyId !== undefined ? { encrypted: o.encrypted ?? true } : {}),
        ...(o.kmsKeyId !== undefined ? { kmsKeyId: o.kmsKeyId } : {}),
        ...(snapshotId !== undefined ? { snapshotId } : {}),
      })
      .catch(async (err: unknown) => {
        // EC2 said no: nothing was made, so there is nothing for abandon to look for. (A timeout or
        // a 5xx leaves the token noted: the volume may exist, and abandon finds it by its tag.)
        if (refusedOutright(err)) await volume.note({ createToken: null });
        throw refusedVolume(err, volume.name, o, az);
      });
    // From here on a failed or interrupted Create is undone by abandon (the core calls it).
    await volume.note({ volumeId: created.id, madeVolume: true });
    if (created.state === 'deleting' || created.state === 'deleted') {
      // The token was spent by an earlier attempt whose volume was deleted again.
      throw new StowageError(
        'CONFLICT',
        `an earlier attempt of this Create made EBS volume ${created.id}, which is ${created.state} now; create volume ${volume.name} again (a new Create makes a new EBS volume)`,
      );
    }
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
      { missingMeansNotYet: true }, // EC2 may not list a volume it has just made
    );
    return { adopted: false, removePolicy: o.onRemove ?? 'delete', fields: fieldsOf(ready) };
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
    let id = volume.fields.madeVolume === true ? volumeIdOf(volume) : undefined;
    if (id === undefined) {
      const found = await this.untilConsistent(since, async () => {
        const vs = await this.cloud.ec2.findVolumesByTag(CREATE_TOKEN_TAG, token);
        return vs.find((v) => v.state !== 'deleting' && v.state !== 'deleted');
      });
      if (!found) return; // CreateVolume never got through
      id = found.id;
    }
    const volumeId = id;
    const v = await this.untilConsistent(since, () => this.cloud.ec2.describeVolume(volumeId));
    if (!v || v.state === 'deleting' || v.state === 'deleted') return;
    const settled =
      v.state !== 'creating'
        ? v
        : await this.waitVolume(
            volumeId,
            (x) => (x.state === 'creating' ? undefined : x),
            parseDuration(this.cfg.createTimeout),
            `EBS volume ${volumeId} (of the interrupted Create of ${volume.name}) to finish creating`,
          );
    const attached = settled.attachments.filter((a) => a.state !== 'detached');
    if (attached.length > 0) {
      throw new StowageError(
        'IN_USE',
        `EBS volume ${volumeId}, made by the interrupted Create of ${volume.name}, is attached to ${attached.map((a) => a.instanceId).join(', ')}; nothing was deleted: detach it, then remove ${volume.name} again`,
      );
    }
    await this.cloud.ec2.deleteVolume(volumeId);
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
    await this.cloud.ec2.detachVolume(id, instanceId, opts.force ? { force: true } : undefined);
    await this.waitVolume(
      id,
      (x) =>
        x.attachments.some((b) => b.instanceId === instanceId && b.state !== 'detached') ? undefined : true,
      parseDuration(this.cfg.attachTimeout),
      `EBS volume ${id} to detach from ${instanceId}`,
      {
        hint: 'EC2 still shows the attachment; when it stays busy, something on that instance still has the device mounted or open.',
      },
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
    const gone = () =>
      new StowageError('NOT_FOUND', `EBS volume ${id} of volume ${volume.name} no longer exists`);
    // EC2 answers InvalidVolume.NotFound here for a volume that is gone (not "never modified").
    const running = await ec2.describeVolumeModification(id).catch((err: unknown) => {
      throw isStowageError(err, 'NOT_FOUND') ? gone() : err;
    });
    if (running?.state === 'modifying') await this.waitModified(volume, id, running.targetSizeGiB, timeoutMs);
    const v = await ec2.describeVolume(id);
    if (!v) throw gone();
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

  /**
   * Another instance holds the volume: refuse, unless preempt, the store records that attachment
   * as stowage's and proves nobody uses it there.
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
    if (
      !madeByStowage(
        other,
        records.find((r) => r.host === owner.id),
      )
    )
      throw notOurAttachment(volume.name, id, other, ` (host ${owner.id})`);
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
    opts: { missingMeansNotYet?: boolean; hint?: string } = {},
  ): Promise<T> {
    return pollUntil(
      async () => {
        const v = await this.cloud.ec2.describeVolume(id);
        if (!v && opts.missingMeansNotYet) return undefined;
        if (!v) throw new StowageError('NOT_FOUND', `EBS volume ${id} disappeared`);
        return check(v);
      },
      { timeoutMs, initialDelayMs: 50, maxDelayMs: 2000, what, ...(opts.hint ? { hint: opts.hint } : {}) },
    );
  }

  /**
   * `read`'s answer, asked again (with backoff) while it is undefined and the Create at `since` is
   * recent enough that EC2 may not show what it made yet; undefined once that window has passed.
   */
  private async untilConsistent<T>(
    since: number,
    read: () => Promise<T | undefined>,
  ): Promise<T | undefined> {
    const windowEnd = (Number.isFinite(since) ? since : 0) + CONSISTENCY_WINDOW_MS;
    const first = await read();
    if (first !== undefined || Date.now() >= windowEnd) return first;
    return pollUntil(async () => (await read()) ?? (Date.now() >= windowEnd ? null : undefined), {
      timeoutMs: Math.max(0, windowEnd - Date.now()) + 1000,
      initialDelayMs: 50,
      maxDelayMs: 1000,
      what: 'EC2 to show the volume of an interrupted Create',
    }).then((x) => x ?? undefined);
  }
}

/** The CreateVolume ClientToken of one volume record (EC2 allows 64 characters). */
export function createToken(name: string, createdAt: string): string {
  return createHash('sha256').update(`stowage\0${name}\0${createdAt}`).digest('hex').slice(0, 64);
}

/** An answer of EC2's that means it made nothing (as opposed to a timeout or an internal error). */
function refusedOutright(err: unknown): boolean {
  if (!(err instanceof StowageError)) return false;
  const aws = err.details.awsError;
  return (
    ['INVALID_ARGUMENT', 'PERMISSION_DENIED', 'NOT_FOUND', 'CONFLICT'].includes(err.code) ||
    aws === 'VolumeLimitExceeded' ||
    aws === 'RequestLimitExceeded'
  );
}

/**
 * EC2's refusal of the request (an unknown zone, a size or IOPS beyond what the type allows) as an
 * INVALID_ARGUMENT that names what was asked; anything else passes through.
 */
function refusedVolume(err: unknown, name: string, o: EbsOptions, az: string): unknown {
  if (!(err instanceof StowageError) || err.code !== 'INVALID_ARGUMENT') return err;
  const asked = [
    `type=${o.type}`,
    o.size !== undefined ? `size=${o.size} GiB` : undefined,
    o.iops !== undefined ? `iops=${o.iops}` : undefined,
    o.throughput !== undefined ? `throughput=${o.throughput} MiB/s` : undefined,
    `availabilityZone=${az}`,
  ].filter(Boolean);
  return new StowageError(
    'INVALID_ARGUMENT',
    `driver ebs: EC2 refused volume ${name} (${asked.join(', ')}): ${err.message.replace(/\.$/, '')}. Nothing was created; correct the option and create again`,
    { cause: err, details: err.details },
  );
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
