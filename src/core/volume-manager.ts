import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isStowageError, StowageError, toStowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { FileOps } from '../mount/file-ops.js';
import type { Mounter } from '../mount/mounter.js';
import {
  type AttachmentRecord,
  type IntentOp,
  isShared,
  type MountRecord,
  type StateStore,
  totalRefs,
  type VolumeRecord,
  type VolumeSummary,
} from '../state/store.js';
import { Attacher } from './attacher.js';
import { crashPoint } from './crash-points.js';
import type { AttachTarget, Driver, Timeouts } from './driver.js';
import type { GrowResult } from './grow-pipeline.js';
import type { VolumeLocks } from './locks.js';
import { validateMountId } from './mount-ids.js';
import { MADE_FILESYSTEM, mountAt, unmountAt, unmountDeadlineMs } from './mount-pipeline.js';
import { validateVolumeName } from './names.js';
import { Publisher, type PublishRequest, type UnpublishOptions } from './publisher.js';
import type { DriverRegistry } from './registry.js';
import { type VolumeHealth, volumeHealth } from './volume-health.js';
import { VolumeResizer } from './volume-resizer.js';
import { VolumeSnapshots } from './volume-snapshots.js';

export interface VolumeManagerDeps {
  host: string;
  mountRoot: string;
  store: StateStore;
  registry: DriverRegistry;
  mounter: Mounter;
  /** File operations through processes with deadlines: a published volume's group, its usage. */
  files: FileOps;
  locks: VolumeLocks;
  timeouts: Timeouts;
  log: Logger;
  /** Config hosts.takeOverGone: volumes of gone hosts may be taken without preempt=true. */
  takeOverGone?: boolean;
  /** Hears of each action reconcile takes, by kind (metrics). */
  onReconcileAction?: (kind: ReconcileActionKind) => void;
}

/** What reconcile did to one record, as counted by stowage_reconcile_actions_total{kind}. */
export type ReconcileActionKind =
  | 'intent-checked'
  | 'intent-undone'
  | 'intent-finished'
  | 'unmount-completed'
  | 'mount-dropped'
  | 'mount-confirmed'
  | 'attachment-released';

export interface VolumeView {
  volume: VolumeRecord;
  /** Mountpoint on this host when mounted here, else undefined. */
  mountpoint?: string;
  mounts: MountRecord[];
  attachments: AttachmentRecord[];
  status: Record<string, unknown>;
}

export interface ReconcileReport {
  actions: string[];
}

/**
 * The only thing adapters call. Every method is idempotent, takes the volume's lock with a bounded
 * wait, records intent in the store before touching the host, and answers reads from the store.
 * `driver` scopes a call to one driver (each Docker socket is one driver); undefined means any.
 */
export class VolumeManager {
  private readonly attacher: Attacher;

  private readonly resizer: VolumeResizer;

  private readonly publisher: Publisher;

  /** Snapshots of volumes (drivers with SnapshotOps: ebs): take, list, show, delete. */
  readonly snapshots: VolumeSnapshots;

  constructor(private readonly d: VolumeManagerDeps) {
    this.attacher = new Attacher(d.store, d.host, d.takeOverGone ?? false);
    this.resizer = new VolumeResizer({
      ...d,
      attacher: this.attacher,
      pipeline: (log) => this.pipeline(log),
      mountpointFor: (name) => this.mountpointFor(name),
      requireReady: (driverName, name) => this.requireReady(driverName, name),
      begin: (volume, op, details) => this.begin(volume, op, details),
    });
    this.publisher = new Publisher({
      ...d,
      requireReady: (driverName, name) => this.requireReady(driverName, name),
      driverOf: (vol) => this.d.registry.get(vol.driver),
      mountHere: (vol, driver, id, log) => this.mountHere(vol, driver, id, log),
      releaseHere: (vol, id, log) => this.releaseHere(vol, id, log),
      begin: (volume, op, details) => this.begin(volume, op, details),
    });
    this.snapshots = new VolumeSnapshots({
      ...d,
      requireReady: (driverName, name) => this.requireReady(driverName, name),
    });
  }

  get host(): string {
    return this.d.host;
  }

  drivers(): Driver[] {
    return this.d.registry.enabled();
  }

  /**
   * Docker's scope: `global` (the same name means the same data on every host) only for shared
   * volumes in a shared store; with SQLite, names are this host's own whatever the backend.
   */
  capabilities(driverName: string): { scope: 'local' | 'global' } {
    const scope = this.d.registry.get(driverName).scope;
    return { scope: scope === 'global' && isShared(this.d.store) ? 'global' : 'local' };
  }

  async create(driverName: string, name: string, rawOptions: Record<string, string>): Promise<VolumeRecord> {
    validateVolumeName(name);
    const driver = this.d.registry.get(driverName);
    const parsed = driver.parseOptions(rawOptions);
    return this.d.locks.withLock(name, 'create', async () => {
      const existing = await this.d.store.getVolume(name);
      const createdAt = existing?.createdAt ?? new Date().toISOString();
      if (existing) {
        if (existing.driver !== driverName) {
          throw new StowageError(
            'CONFLICT',
            `volume ${name} already exists with driver ${existing.driver}; choose another name or remove it first`,
          );
        }
        if (existing.status === 'removing') {
          throw new StowageError(
            'BUSY',
            `volume ${name} is being removed; run Remove again to finish, then create it`,
          );
        }
        assertSameOptions(existing, parsed.values, parsed.given);
        if (existing.status !== 'creating') return existing;
        // An earlier Create was interrupted after recording; provisioning is idempotent, finish it.
      } else {
        await this.d.store.insertVolume({
          name,
          driver: driverName,
          options: parsed.values,
          givenOptions: parsed.given,
          removePolicy: 'retain',
          adopted: false,
          createdAt,
          status: 'creating',
          fields: {},
        });
        crashPoint('create:recorded');
      }
      const log = this.d.log.child({ op: 'create', volume: name, driver: driverName });
      let noted: Record<string, unknown> = { ...(existing?.fields ?? {}) };
      try {
        const res = await driver.provision({
          name,
          options: parsed.values,
          givenOptions: parsed.given,
          resuming: existing !== undefined,
          createdAt,
          noted,
          note: async (fields) => {
            noted = { ...noted, ...fields };
            await this.d.store.updateVolume(name, { fields: noted });
            crashPoint('create:noted');
          },
        });
        crashPoint('create:provisioned');
        await this.d.store.updateVolume(name, {
          status: 'ready',
          fields: res.fields,
          adopted: res.adopted,
          removePolicy: res.removePolicy,
        });
        log.info({ adopted: res.adopted, removePolicy: res.removePolicy }, 'volume created');
      } catch (err) {
        // Undo what this Create noted it made, then forget the record so that a corrected Create
        // starts clean (a new creation time, hence new idempotency tokens). When the undo fails the
        // record stays `creating`, naming what is left, for Remove to finish: nothing leaks unnamed.
        const record = (await this.d.store.getVolume(name))!;
        try {
          await driver.abandon(record);
        } catch (undoErr) {
          log.error({ err: (undoErr as Error).message, fields: record.fields }, 'failed Create not undone');
          throw new StowageError(
            toStowageError(err, `create of volume ${name}`).code,
            `${(err as Error).message}; undoing what this Create made failed too (${(undoErr as Error).message}): run Remove ${name} to retry the cleanup`,
            { cause: err },
          );
        }
        await this.d.store.deleteVolume(name);
        log.warn({ err: (err as Error).message }, 'create failed');
        throw err;
      }
      return (await this.d.store.getVolume(name))!;
    });
  }

  async remove(driverName: string | undefined, name: string): Promise<void> {
    validateVolumeName(name);
    await this.d.locks.withLock(name, 'remove', async () => {
      const vol = await this.d.store.getVolume(name);
      if (!vol || (driverName !== undefined && vol.driver !== driverName)) return; // already gone
      const driver = this.d.registry.get(vol.driver);
      const log = this.d.log.child({ op: 'remove', volume: name, driver: vol.driver });

      const mounts = await this.d.store.getMounts(name);
      const active = mounts.filter((m) => totalRefs(m) > 0);
      if (active.length > 0) {
        const desc = active.map(
          (m) => `${totalRefs(m)} mount${totalRefs(m) === 1 ? '' : 's'} on host ${m.host}`,
        );
        throw new StowageError(
          'IN_USE',
          `volume ${name} is in use by ${desc.join(' and ')}; stop the containers or pods using it, then remove it again`,
        );
      }
      // Leftovers of an interrupted unmount on this host are finished here; other hosts must do their own.
      const attachments = await this.d.store.getAttachments(name);
      if ([...mounts, ...attachments].some((x) => x.host === this.d.host))
        await this.teardown(vol, driver, log);
      const elsewhere = [
        ...(await this.d.store.getMounts(name)).map((m) => `mounted on host ${m.host}`),
        ...(await this.d.store.getAttachments(name)).map((a) => `attached to host ${a.host}`),
      ];
      const remaining = [...new Set(elsewhere)];
      if (remaining.length > 0) {
        throw new StowageError(
          'IN_USE',
          `volume ${name} is still ${remaining.join(', ')}; run stowage on that host to release it, then remove again`,
        );
      }
      if (vol.status === 'creating') {
        // An interrupted Create: its remove policy was never decided, so undo exactly what it noted
        // it made (kept `creating` meanwhile: a Remove killed here is simply run again).
        const intent = await this.begin(name, 'remove', { abandon: true });
        try {
          await driver.abandon(vol);
        } finally {
          await this.d.store.endIntent(intent);
        }
        crashPoint('remove:abandoned');
        await this.d.store.deleteVolume(name);
        log.info({ fields: vol.fields }, 'interrupted create undone and volume removed');
        return;
      }
      await this.d.store.updateVolume(name, { status: 'removing' });
      const intent = await this.begin(name, 'remove', { policy: vol.removePolicy });
      crashPoint('remove:marked');
      try {
        await driver.destroy(vol);
      } catch (err) {
        // A refusal (IN_USE) deleted nothing: the volume stays usable. Other failures keep 'removing'
        // so that only another Remove (safe to repeat) can touch it.
        if (isStowageError(err, 'IN_USE')) await this.d.store.updateVolume(name, { status: 'ready' });
        throw err;
      } finally {
        await this.d.store.endIntent(intent);
      }
      crashPoint('remove:destroyed');
      await this.d.store.deleteVolume(name);
      log.info({ policy: vol.removePolicy }, 'volume removed');
    });
  }

  async get(driverName: string | undefined, name: string): Promise<VolumeView> {
    validateVolumeName(name);
    const { volume: vol, mounts, attachments } = await this.d.store.getVolumeState(name);
    if (!vol || (driverName !== undefined && vol.driver !== driverName)) {
      throw new StowageError('NOT_FOUND', `volume ${name} does not exist`);
    }
    const here = mounts.find((m) => m.host === this.d.host && m.state === 'mounted');
    const view: VolumeView = {
      volume: vol,
      mounts,
      attachments,
      status: this.statusOf(vol, mounts, attachments),
    };
    if (here) view.mountpoint = here.mountpoint;
    // etcd's read cache answering from its last copy while etcd is unreachable: say so.
    const fresh = this.d.store.freshness?.();
    if (fresh?.stale) {
      view.status.store = `stale since ${fresh.since} (${fresh.reason ?? 'etcd unreachable'}): as of revision ${fresh.revision}`;
    }
    return view;
  }

  async list(driverName?: string): Promise<VolumeSummary[]> {
    return this.d.store.listVolumeSummaries(
      this.d.host,
      driverName === undefined ? {} : { driver: driverName },
    );
  }

  /** The mountpoint on this host, or "" when the volume is not mounted here. */
  async path(driverName: string | undefined, name: string): Promise<string> {
    return (await this.get(driverName, name)).mountpoint ?? '';
  }

  async mount(driverName: string | undefined, name: string, id: string): Promise<string> {
    validateVolumeName(name);
    validateMountId(id);
    return this.d.locks.withLock(name, 'mount', async () => {
      const vol = await this.requireReady(driverName, name);
      const log = this.d.log.child({ op: 'mount', volume: name, driver: vol.driver });
      return this.mountHere(vol, this.d.registry.get(vol.driver), id, log);
    });
  }

  /**
   * Shows the volume at `target` (a path the caller owns, such as a pod's volume directory) as a
   * bind mount of its mountpoint here, counted under `id`; see Publisher.
   */
  publish(req: PublishRequest): Promise<void> {
    return this.publisher.publish(req);
  }

  /** Ends what publish({ id, target, … }) made; a path not published is success. */
  unpublish(id: string, target: string, opts: UnpublishOptions = {}): Promise<void> {
    return this.publisher.unpublish(id, target, opts);
  }

  /**
   * Usage and condition of the volume at `path`, where this host counts it under one of `ids` (a
   * door knows which ids its path can stand for); NOT_FOUND when it is not counted there.
   */
  async healthAt(
    driverName: string,
    name: string,
    path: string,
    ids: readonly string[],
  ): Promise<VolumeHealth> {
    validateVolumeName(name);
    const { volume, mounts } = await this.d.store.getVolumeState(name);
    if (!volume || volume.driver !== driverName) {
      throw new StowageError('NOT_FOUND', `volume ${name} does not exist`);
    }
    const here = mounts.find((m) => m.host === this.d.host);
    if (!here || !ids.some((id) => (here.refs[id] ?? 0) > 0)) {
      throw new StowageError(
        'NOT_FOUND',
        `volume ${name} is not published or staged at ${path} on this host`,
      );
    }
    return volumeHealth(this.d, volume, here, path);
  }

  async unmount(driverName: string | undefined, name: string, id: string): Promise<void> {
    validateVolumeName(name);
    validateMountId(id);
    await this.d.locks.withLock(name, 'unmount', async () => {
      const vol = await this.d.store.getVolume(name);
      if (!vol || (driverName !== undefined && vol.driver !== driverName)) return;
      await this.releaseHere(vol, id, this.d.log.child({ op: 'unmount', volume: name, driver: vol.driver }));
    });
  }

  /**
   * Attaches a volume to another host (or this one) without mounting it: Kubernetes'
   * controller-manager does this for a node. Returns the attachment's device name.
   */
  async attach(driverName: string, name: string, target: AttachTarget): Promise<string> {
    validateVolumeName(name);
    return this.d.locks.withLock(name, 'attach', async () => {
      const vol = await this.requireReady(driverName, name);
      const driver = this.d.registry.get(vol.driver);
      const current = (await this.d.store.getAttachments(name)).find((a) => a.host === target.host);
      if (current?.state === 'attached') return current.device;
      const log = this.d.log.child({ op: 'attach', volume: name, driver: vol.driver });
      const intent = await this.begin(name, 'attach', { to: target.host });
      try {
        return (await this.attacher.attach(vol, driver, target, log)).device;
      } finally {
        await this.d.store.endIntent(intent);
      }
    });
  }

  /** Whether the store records the volume as attached to `host`. A missing volume is not attached. */
  async isAttached(driverName: string, name: string, host: string): Promise<boolean> {
    validateVolumeName(name);
    const { volume, attachments } = await this.d.store.getVolumeState(name);
    if (!volume || volume.driver !== driverName) return false;
    return attachments.some((a) => a.host === host && a.state === 'attached');
  }

  /**
   * Makes sure the volume is attached here and returns its local block device: what kubelet waits
   * for on the node. Attaches from here when no attachment is recorded (a controller on another
   * store, or a detach that raced), so the node never waits for something nobody will do.
   */
  async attachHere(driverName: string, name: string): Promise<string> {
    validateVolumeName(name);
    return this.d.locks.withLock(name, 'attach', async () => {
      const vol = await this.requireReady(driverName, name);
      const driver = this.d.registry.get(vol.driver);
      const log = this.d.log.child({ op: 'attach', volume: name, driver: vol.driver });
      let attachment = (await this.d.store.getAttachments(name)).find((a) => a.host === this.d.host);
      if (attachment?.state !== 'attached') {
        const intent = await this.begin(name, 'attach', { to: this.d.host });
        try {
          attachment = await this.attacher.attach(vol, driver, undefined, log);
        } finally {
          await this.d.store.endIntent(intent);
        }
      }
      return (await this.attacher.local(vol, driver, attachment)).device;
    });
  }

  /** Detaches a volume from a host; refused while that host has any mount of it. Idempotent. */
  async detach(driverName: string, name: string, target: AttachTarget): Promise<void> {
    validateVolumeName(name);
    await this.d.locks.withLock(name, 'detach', async () => {
      const vol = await this.d.store.getVolume(name);
      if (!vol || vol.driver !== driverName) return;
      const log = this.d.log.child({ op: 'detach', volume: name, driver: vol.driver });
      const intent = await this.begin(name, 'detach', { from: target.host });
      try {
        await this.attacher.detach(vol, this.d.registry.get(vol.driver), target, log);
      } finally {
        await this.d.store.endIntent(intent);
      }
    });
  }

  /** Grows the volume's storage (any host); see VolumeResizer. */
  expand(driverName: string, name: string, newBytes: number): Promise<{ sizeBytes: number }> {
    return this.resizer.expand(driverName, name, newBytes);
  }

  /** Grows the filesystem on this host to its device's size; see VolumeResizer. */
  growFilesystem(
    driverName: string,
    name: string,
    opts: { minDeviceBytes?: number } = {},
  ): Promise<GrowResult> {
    return this.resizer.growFilesystem(driverName, name, opts);
  }

  /** Full view for `stowage volumes inspect`. */
  async inspect(name: string): Promise<VolumeView> {
    return this.get(undefined, name);
  }

  /**
   * Brings the records of this host in line with the kernel after a restart or crash: finishes
   * interrupted teardowns, drops mount records whose mount vanished (host restarted), and releases
   * attachments that no mount needs. Mounts that are recorded and present are left alone.
   * Volumes of drivers this process does not serve are skipped, intents included: several daemons
   * (one per driver, say) may share a store, and each settles only its own drivers' volumes.
   * Requests may run meanwhile (the daemon serves before this finishes): every decision is taken
   * again under the volume's lock, from the records as they are then.
   */
  async reconcile(): Promise<ReconcileReport> {
    const actions: string[] = [];
    const act = (kind: ReconcileActionKind, action: string) => {
      actions.push(action);
      this.d.onReconcileAction?.(kind);
    };
    const log = this.d.log.child({ op: 'reconcile' });

    // Another process on this host (an old daemon finishing, a flexvolume call) may have finished
    // or changed the volume while we waited for its lock.
    for (const intent of await this.d.store.listIntents(this.d.host)) {
      if (!(await this.serves(intent.volume))) continue; // its driver's daemon finishes it
      let action = `interrupted ${intent.op} of ${intent.volume}: state checked`;
      let kind: ReconcileActionKind = 'intent-checked';
      const outcome = await this.withVolume(intent.volume, 'reconcile', async (vol, driver) => {
        const open = (await this.d.store.listIntents(this.d.host)).some((i) => i.id === intent.id);
        if (!open) {
          action = ''; // its owner finished it
          return;
        }
        if (intent.op === 'resize') {
          const done = await this.resizer
            .finishResize(vol, driver, intent, log)
            .catch((err: unknown) => `could not be finished (${(err as Error).message})`);
          action = `interrupted resize of ${intent.volume}: ${done}`;
          kind = 'intent-finished';
          return;
        }
        if (intent.op === 'publish' || intent.op === 'unpublish') {
          const done = await this.publisher.finishInterrupted(vol, intent, log);
          action = `interrupted ${intent.op} of ${intent.volume} at ${String(intent.details.target)}: ${done}`;
          kind = 'intent-finished';
          return;
        }
        const m = (await this.d.store.getMounts(vol.name)).find((x) => x.host === this.d.host);
        // An attach or detach for another host (a controller's) is finished by its next retry.
        const remote = (intent.details.to ?? intent.details.from ?? this.d.host) !== this.d.host;
        if (!remote && (intent.op === 'mount' || intent.op === 'attach') && (!m || totalRefs(m) === 0)) {
          action = `interrupted ${intent.op} of ${intent.volume}: undone`;
          kind = 'intent-undone';
          await this.teardown(vol, driver, log);
        }
      });
      if (outcome === 'not served') continue;
      await this.d.store.endIntent(intent.id); // a no-op when its owner already ended it
      if (action) act(kind, action);
    }

    for (const snapshot of await this.d.store.listMountsByHost(this.d.host)) {
      if (!(await this.serves(snapshot.volume))) continue;
      await this.withVolume(snapshot.volume, 'reconcile', async (vol, driver) => {
        const m = (await this.d.store.getMounts(vol.name)).find((x) => x.host === this.d.host);
        if (!m) return;
        const refs = totalRefs(m);
        if (refs === 0) {
          act('unmount-completed', `unfinished unmount of ${m.volume}: completed`);
          await this.teardown(vol, driver, log);
        } else if (!(await this.d.mounter.isMountPoint(m.mountpoint))) {
          act(
            'mount-dropped',
            `${m.volume} had ${refs} mount(s) recorded but is not mounted (host restarted?): records dropped`,
          );
          await this.teardown(vol, driver, log);
        } else if (m.state !== 'mounted') {
          await this.d.store.putMount({ ...m, state: 'mounted', updatedAt: new Date().toISOString() });
          act('mount-confirmed', `${m.volume}: mount confirmed`);
        }
      });
    }

    for (const a of await this.d.store.listAttachmentsByHost(this.d.host)) {
      if (!(await this.serves(a.volume))) continue;
      const released = `${a.volume}: attachment without a mount released`;
      const outcome = await this.withVolume(a.volume, 'reconcile', async (vol, driver) => {
        // Looked at again under the lock: a Mount served since the listing may be using it now.
        const attached = (await this.d.store.getAttachments(vol.name)).some((x) => x.host === this.d.host);
        const mounted = (await this.d.store.getMounts(vol.name)).some((m) => m.host === this.d.host);
        if (!attached || mounted) return;
        act('attachment-released', released);
        await this.teardown(vol, driver, log);
      });
      if (outcome === 'no volume') act('attachment-released', released);
    }
    for (const action of actions) log.warn(action);
    return { actions };
  }

  mountpointFor(name: string): string {
    return join(this.d.mountRoot, name);
  }

  /** Mount's work under the volume's lock: mounts the volume here (once) and counts `id`. */
  private async mountHere(vol: VolumeRecord, driver: Driver, id: string, log: Logger): Promise<string> {
    const name = vol.name;
    if (vol.options.access === 'single-host') await this.attacher.claimSingleHost(vol, log);
    const target = this.mountpointFor(name);
    let existing = (await this.d.store.getMounts(name)).find((m) => m.host === this.d.host);

    if (existing?.state === 'mounted') {
      if (await this.d.mounter.isMountPoint(existing.mountpoint)) {
        const counted = {
          ...existing,
          refs: addRef(existing.refs, id, 1),
          updatedAt: new Date().toISOString(),
        };
        await this.d.store.putMount(counted);
        log.debug({ id, refs: totalRefs(counted) }, 'already mounted; counted');
        return existing.mountpoint;
      }
      // The kernel lost the mount (host restarted, or unmounted by hand) and reconcile has not
      // dropped its records yet (the daemon serves before reconcile is done): start over as
      // reconcile would. Counting on top would keep references nobody releases, and the
      // recorded attachment may name a loop device that now backs another volume's image.
      log.warn(
        { refs: totalRefs(existing), target: existing.mountpoint },
        'recorded mount is gone from the kernel; its records dropped, mounting afresh',
      );
      await this.teardown(vol, driver, log);
      existing = undefined;
    }

    const refs = addRef(existing?.refs ?? {}, id, 1);
    const intent = await this.begin(name, 'mount', { id, target });
    let attachedNow = false;
    try {
      let attachment = (await this.d.store.getAttachments(name)).find((a) => a.host === this.d.host);
      if (driver.needsAttach && driver.attach && !(await this.attacher.holds(vol, driver, attachment, log))) {
        attachment = await this.attacher.attach(vol, driver, undefined, log);
        attachedNow = true;
      }
      const here = attachment && (await this.attacher.local(vol, driver, attachment));
      crashPoint('mount:attached');
      await mountAt(this.pipeline(log), await driver.mountSpec(vol, here), target, {
        onFormatted: (fsType) => this.recordFormatted(name, fsType),
      });
      crashPoint('mount:mounted');
      await this.d.store.putMount({
        volume: name,
        host: this.d.host,
        mountpoint: target,
        refs,
        state: 'mounted',
        updatedAt: new Date().toISOString(),
      });
      log.info({ id, target }, 'mounted');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'mount failed; undoing');
      if (attachedNow || !existing) await this.teardown(vol, driver, log).catch(() => undefined);
      throw toStowageError(err, `mount of volume ${name}`);
    } finally {
      await this.d.store.endIntent(intent);
    }
    return target;
  }

  /** Records that stowage made `fsType` on the volume: its later mounts skip the probe (blkid). */
  private async recordFormatted(name: string, fsType: string): Promise<void> {
    const current = await this.d.store.getVolume(name);
    if (current)
      await this.d.store.updateVolume(name, { fields: { ...current.fields, [MADE_FILESYSTEM]: fsType } });
  }

  /** Unmount's work under the volume's lock: one count of `id` less, torn down at zero. */
  private async releaseHere(vol: VolumeRecord, id: string, log: Logger): Promise<void> {
    const name = vol.name;
    const mount = (await this.d.store.getMounts(name)).find((m) => m.host === this.d.host);
    if (!mount?.refs[id]) {
      log.debug({ id }, 'unknown mount id; nothing to do');
      return;
    }
    // Decrement first and always (as Docker's own local driver does): a failed teardown must not
    // leave a reference that blocks Remove forever; the zero-ref row says the teardown is owed.
    const refs = addRef(mount.refs, id, -1);
    const left = totalRefs({ refs });
    await this.d.store.putMount({
      ...mount,
      refs,
      state: left > 0 ? mount.state : 'unmounting',
      updatedAt: new Date().toISOString(),
    });
    crashPoint('unmount:counted');
    if (left > 0) {
      log.debug({ id, refs: left }, 'still in use; kept mounted');
      return;
    }
    try {
      await this.teardown(vol, this.d.registry.get(vol.driver), log);
    } catch (err) {
      throw toStowageError(err, `unmount of volume ${name}`);
    }
    log.info({ id }, 'unmounted');
  }

  /** Unmount (if mounted here), detach (if attached here) and drop this host's records. */
  private async teardown(vol: VolumeRecord, driver: Driver, log: Logger): Promise<void> {
    const target = this.mountpointFor(vol.name);
    const intent = await this.begin(vol.name, 'unmount', { target });
    try {
      const pipeline = this.pipeline(log);
      await unmountAt(pipeline, target, {
        lazyFallback: driver.lazyUnmount,
        timeoutMs: unmountDeadlineMs(vol, pipeline.timeouts),
        freeLoopDevice: driver.unmountFreesLoop === true,
      });
      // No longer a mount point (a lazy unmount detaches at once): the empty directory goes too, as
      // Docker's own driver does. rmdir refuses anything that is not an empty directory.
      await rmdir(target).catch(() => undefined);
      crashPoint('teardown:unmounted');
      await this.d.store.deleteMount(vol.name, this.d.host);
      crashPoint('teardown:unrecorded');
      await this.attacher.detach(vol, driver, undefined, log);
    } finally {
      await this.d.store.endIntent(intent);
    }
  }

  /**
   * Runs `fn` under the volume's lock with its record and driver. A volume whose record is gone
   * has this host's leftover records dropped instead; one of a driver this process does not serve
   * is left alone.
   */
  private async withVolume(
    name: string,
    op: string,
    fn: (vol: VolumeRecord, driver: Driver) => Promise<void>,
  ): Promise<'done' | 'no volume' | 'not served'> {
    return this.d.locks.withLock(name, op, async () => {
      const vol = await this.d.store.getVolume(name);
      if (!vol) {
        await this.d.store.deleteMount(name, this.d.host);
        await this.d.store.deleteAttachment(name, this.d.host);
        return 'no volume';
      }
      if (!this.d.registry.isEnabled(vol.driver)) return 'not served';
      await fn(vol, this.d.registry.get(vol.driver));
      return 'done';
    });
  }

  /**
   * Whether this process serves the volume's driver, read without the lock so that volumes of
   * other daemons' drivers are not even locked. A missing volume counts as served: its leftover
   * records on this host are anyone's to drop.
   */
  private async serves(name: string): Promise<boolean> {
    const vol = await this.d.store.getVolume(name);
    return !vol || this.d.registry.isEnabled(vol.driver);
  }

  private async requireReady(driverName: string | undefined, name: string): Promise<VolumeRecord> {
    const vol = await this.d.store.getVolume(name);
    if (!vol || (driverName !== undefined && vol.driver !== driverName)) {
      throw new StowageError('NOT_FOUND', `volume ${name} does not exist; create it first`);
    }
    if (vol.status !== 'ready') {
      throw new StowageError(
        'BUSY',
        `volume ${name} is ${vol.status === 'creating' ? 'still being created (or its creation was interrupted; run Create again)' : 'being removed'}`,
      );
    }
    return vol;
  }

  private statusOf(
    vol: VolumeRecord,
    mounts: MountRecord[],
    attachments: AttachmentRecord[],
  ): Record<string, unknown> {
    const driver = this.d.registry.get(vol.driver);
    return {
      driver: vol.driver,
      state: vol.status,
      removePolicy: vol.removePolicy,
      adopted: vol.adopted,
      ...driver.describe(vol),
      mounts: mounts.map((m) => ({
        host: m.host,
        mountpoint: m.mountpoint,
        refs: totalRefs(m),
        state: m.state,
      })),
      attachments: attachments.map((a) => ({ host: a.host, device: a.device, state: a.state })),
    };
  }

  private pipeline(log: Logger) {
    return { mounter: this.d.mounter, log, timeouts: this.d.timeouts };
  }

  private begin(volume: string, op: IntentOp, details: Record<string, unknown>): Promise<number> {
    return this.d.store.beginIntent({ volume, host: this.d.host, op, details });
  }
}

/** A copy of `refs` with `id` counted `delta` more times; ids that reach zero are dropped. */
function addRef(refs: Readonly<Record<string, number>>, id: string, delta: number): Record<string, number> {
  const out = { ...refs };
  const count = (out[id] ?? 0) + delta;
  if (count > 0) out[id] = count;
  else delete out[id];
  return out;
}

function assertSameOptions(existing: VolumeRecord, values: Record<string, unknown>, given: string[]): void {
  const diffs = given
    .filter((k) => JSON.stringify(existing.options[k]) !== JSON.stringify(values[k]))
    .map((k) => `${k}=${JSON.stringify(values[k])} (recorded: ${JSON.stringify(existing.options[k])})`);
  if (diffs.length > 0) {
    throw new StowageError(
      'CONFLICT',
      `volume ${existing.name} already exists with different options: ${diffs.join(', ')}; remove it first or use another name`,
    );
  }
}
