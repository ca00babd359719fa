import {
  type CreateVolumeInput,
  DEVICE_NAME_IN_USE,
  type Ec2Api,
  type Ec2Volume,
  isStowageError,
  pollUntil,
  StowageError,
} from '../../src/index.js';

/**
 * How long after a Create EC2's reads may still miss the volume it made (eventual consistency):
 * within it, "not found" means "not yet"; after it, "gone".
 */
export const CONSISTENCY_WINDOW_MS = 15_000;

export type CreateOutcome =
  | { kind: 'available'; volume: Ec2Volume }
  /** EC2 said no: nothing was made. */
  | { kind: 'refused'; error: StowageError }
  /** The ClientToken was spent by an earlier attempt whose volume is being (or was) deleted. */
  | { kind: 'token-spent'; id: string; state: 'deleting' | 'deleted' };

export type AttachOutcome =
  | { kind: 'attached' }
  /** The instance already uses the name: pick another. */
  | { kind: 'device-name-in-use' }
  /** AttachVolume failed: the name was never used. */
  | { kind: 'refused'; error: unknown }
  /** Never became attached within the deadline: force-detached again; the name is suspect now. */
  | { kind: 'stuck'; error: unknown };

export type DetachOutcome = { kind: 'detached' } | { kind: 'volume-gone' };

export type DeleteOutcome = { kind: 'deleted' } | { kind: 'attached'; instanceIds: string[] };

export type GrowOutcome =
  | { kind: 'volume-gone' }
  /** `sizeGiB` is the volume's size now, grown from `fromGiB` when those differ. */
  | { kind: 'sized'; fromGiB: number; sizeGiB: number };

const DETACH_HINT =
  'EC2 still shows the attachment; when it stays busy, something on that instance still has the device mounted or open.';

/**
 * The EC2 operations of the EBS driver together with their waits, each bounded by the deadline it
 * is given and answering a typed outcome for what the driver decides on. No policy here: which
 * name, whether to take over, what to note and what to refuse are the driver's.
 */
export class EbsCloud {
  constructor(readonly ec2: Ec2Api) {}

  /**
   * CreateVolume, `made` (awaited, to note the id before anything else can fail), then a wait
   * until `available`. EC2 may not list a volume it has just made: missing means "not yet" here.
   */
  async create(
    input: CreateVolumeInput,
    timeoutMs: number,
    made: (id: string) => Promise<void>,
  ): Promise<CreateOutcome> {
    let created: Ec2Volume;
    try {
      created = await this.ec2.createVolume(input);
    } catch (err) {
      if (refusedOutright(err)) return { kind: 'refused', error: err };
      throw err; // a timeout or a 5xx: the volume may exist
    }
    await made(created.id);
    if (created.state === 'deleting' || created.state === 'deleted')
      return { kind: 'token-spent', id: created.id, state: created.state };
    const volume = await this.waitVolume(
      created.id,
      (v) => {
        if (v.state === 'available') return v;
        if (v.state === 'error')
          throw new StowageError('UNAVAILABLE', `EBS volume ${created.id} went into state error`);
        return undefined;
      },
      timeoutMs,
      `EBS volume ${created.id} to become available`,
      { missingMeansNotYet: true },
    );
    return { kind: 'available', volume };
  }

  /** The live volume tagged `key`=`value` by a Create at `since`, allowing for EC2's lag. */
  findCreated(key: string, value: string, since: number): Promise<Ec2Volume | undefined> {
    return this.untilConsistent(since, async () => {
      const vs = await this.ec2.findVolumesByTag(key, value);
      return vs.find((v) => v.state !== 'deleting' && v.state !== 'deleted');
    });
  }

  /** The volume made by a Create at `since`, allowing for EC2's lag; then past `creating`. */
  async describeCreated(
    id: string,
    since: number,
    timeoutMs: number,
    what: string,
  ): Promise<Ec2Volume | undefined> {
    const v = await this.untilConsistent(since, () => this.ec2.describeVolume(id));
    if (v?.state !== 'creating') return v;
    return this.waitVolume(id, (x) => (x.state === 'creating' ? undefined : x), timeoutMs, what);
  }

  /** DeleteVolume of `v`, unless EC2 shows it attached anywhere (then nothing is deleted). */
  async deleteUnattached(v: Ec2Volume): Promise<DeleteOutcome> {
    const attached = v.attachments.filter((a) => a.state !== 'detached');
    if (attached.length > 0) return { kind: 'attached', instanceIds: attached.map((a) => a.instanceId) };
    await this.ec2.deleteVolume(v.id);
    return { kind: 'deleted' };
  }

  /** AttachVolume under `device`, then a wait until attached. */
  async attach(id: string, instanceId: string, device: string, timeoutMs: number): Promise<AttachOutcome> {
    try {
      await this.ec2.attachVolume(id, instanceId, device);
    } catch (err) {
      if (isStowageError(err) && err.details.reason === DEVICE_NAME_IN_USE)
        return { kind: 'device-name-in-use' };
      return { kind: 'refused', error: err };
    }
    try {
      await this.waitAttached(id, instanceId, device, timeoutMs);
      return { kind: 'attached' };
    } catch (error) {
      // A stuck "attaching" must not stay behind to surprise the next try.
      await this.ec2.detachVolume(id, instanceId, { force: true }).catch(() => undefined);
      return { kind: 'stuck', error };
    }
  }

  /** Until EC2 shows the attachment of `id` to `instanceId` attached (it must not disappear). */
  async waitAttached(id: string, instanceId: string, device: string, timeoutMs: number): Promise<void> {
    await this.waitVolume(
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
      timeoutMs,
      `EBS volume ${id} to attach to ${instanceId} as ${device}`,
    );
  }

  /**
   * DetachVolume (forced when asked), then a wait until EC2 no longer shows the attachment; one
   * stuck `busy` runs into the deadline with a hint at what holds it.
   */
  async detach(
    id: string,
    instanceId: string,
    opts: { force?: boolean; timeoutMs: number },
  ): Promise<DetachOutcome> {
    await this.ec2.detachVolume(id, instanceId, opts.force ? { force: true } : undefined);
    try {
      await this.waitVolume(
        id,
        (v) =>
          v.attachments.some((a) => a.instanceId === instanceId && a.state !== 'detached') ? undefined : true,
        opts.timeoutMs,
        `EBS volume ${id} to detach from ${instanceId}`,
        { hint: DETACH_HINT },
      );
      return { kind: 'detached' };
    } catch (err) {
      if (isStowageError(err, 'NOT_FOUND')) return { kind: 'volume-gone' };
      throw err;
    }
  }

  /**
   * Grows `id` to at least `wantedGiB`: waits out a modification still running from an earlier try
   * (not started again), then ModifyVolume only when the volume is smaller, and a wait until EC2
   * says `optimizing` (the new size is usable from then on; optimizing itself can take hours).
   * `label` names the volume in messages.
   */
  async grow(id: string, wantedGiB: number, label: string, timeoutMs: number): Promise<GrowOutcome> {
    // EC2 answers InvalidVolume.NotFound here for a volume that is gone (not "never modified").
    let running: Awaited<ReturnType<Ec2Api['describeVolumeModification']>>;
    try {
      running = await this.ec2.describeVolumeModification(id);
    } catch (err) {
      if (isStowageError(err, 'NOT_FOUND')) return { kind: 'volume-gone' };
      throw err;
    }
    if (running?.state === 'modifying') await this.waitModified(id, running.targetSizeGiB, label, timeoutMs);
    const v = await this.ec2.describeVolume(id);
    if (!v) return { kind: 'volume-gone' };
    if (v.sizeGiB >= wantedGiB) return { kind: 'sized', fromGiB: v.sizeGiB, sizeGiB: v.sizeGiB };
    await this.ec2.modifyVolume(id, wantedGiB);
    await this.waitModified(id, wantedGiB, label, timeoutMs);
    return { kind: 'sized', fromGiB: v.sizeGiB, sizeGiB: wantedGiB };
  }

  /** Until the latest modification (to at least `sizeGiB`) is optimizing or completed. */
  private waitModified(id: string, sizeGiB: number, label: string, timeoutMs: number): Promise<true> {
    return pollUntil(
      async () => {
        const m = await this.ec2.describeVolumeModification(id);
        if (!m || m.targetSizeGiB < sizeGiB) {
          throw new StowageError(
            'UNAVAILABLE',
            `EC2 shows no modification of ${id} (${label}) to ${sizeGiB} GiB; try again`,
          );
        }
        if (m.state === 'failed') {
          throw new StowageError(
            'UNAVAILABLE',
            `EC2 could not grow ${id} (${label}) to ${sizeGiB} GiB: ${m.statusMessage ?? 'modification failed'}`,
          );
        }
        return m.state === 'optimizing' || m.state === 'completed' ? true : undefined;
      },
      {
        timeoutMs,
        initialDelayMs: 50,
        maxDelayMs: 2000,
        what: `EBS volume ${id} (${label}) to reach ${sizeGiB} GiB`,
        hint: 'EC2 is still modifying it; try again later (ebs.modifyTimeout bounds this wait).',
      },
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
        const v = await this.ec2.describeVolume(id);
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

/** An answer of EC2's that means it made nothing (as opposed to a timeout or an internal error). */
function refusedOutright(err: unknown): err is StowageError {
  if (!(err instanceof StowageError)) return false;
  const aws = err.details.awsError;
  return (
    ['INVALID_ARGUMENT', 'PERMISSION_DENIED', 'NOT_FOUND', 'CONFLICT'].includes(err.code) ||
    aws === 'VolumeLimitExceeded' ||
    aws === 'RequestLimitExceeded'
  );
}
