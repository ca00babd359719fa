import { StowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import { type AttachmentRecord, type StateStore, totalRefs, type VolumeRecord } from '../state/store.js';
import type { AttachTarget, Driver } from './driver.js';
import { goneHosts } from './hosts.js';
import { hostHolder, refuseTakeOverUnlessAllowed } from './takeover.js';

/**
 * Attachments of block volumes to hosts, arbitrated in the store before any cloud call: a volume
 * is attached to one host at a time. The caller holds the volume's lock. `target` undefined means
 * this host; another host is only possible for drivers that attach remotely (EBS from Kubernetes'
 * controller-manager), and then its identity comes from the hosts registry.
 */
export class Attacher {
  constructor(
    private readonly store: StateStore,
    private readonly host: string,
    /** Take volumes over from gone hosts without preempt=true (config hosts.takeOverGone). */
    private readonly takeOverGone = false,
  ) {}

  /** Attaches `vol` to the target (recorded as attaching, then attached) and returns the record. */
  async attach(
    vol: VolumeRecord,
    driver: Driver,
    target: AttachTarget | undefined,
    log: Logger,
  ): Promise<AttachmentRecord> {
    if (!driver.attach)
      throw new StowageError('NOT_SUPPORTED', `driver ${driver.name} does not attach volumes`);
    const host = target?.host ?? this.host;
    if (host !== this.host && !driver.attachesRemotely) {
      throw new StowageError(
        'NOT_SUPPORTED',
        `driver ${driver.name} attaches volumes only on the host itself, not to ${host} from here`,
      );
    }
    const all = await this.store.getAttachments(vol.name);
    const others = await this.refuseOrReleaseOthers(vol, driver, all, host, log);
    const previous = all.find((a) => a.host === host);
    const attaching = (device: string): AttachmentRecord => ({
      volume: vol.name,
      host,
      device,
      state: 'attaching',
      updatedAt: new Date().toISOString(),
    });
    await this.store.putAttachment(attaching(previous?.device ?? ''));
    const { device } = await driver.attach(vol, target, {
      before: all,
      noteDevice: (name) => this.store.putAttachment(attaching(name)),
    });
    // The driver took the volume over in the cloud (preempt): the other hosts' records are stale now.
    for (const o of others) await this.store.deleteAttachment(vol.name, o.host);
    const record: AttachmentRecord = {
      volume: vol.name,
      host,
      device,
      state: 'attached',
      updatedAt: new Date().toISOString(),
    };
    await this.store.putAttachment(record);
    log.info({ device, to: host }, 'attached');
    return record;
  }

  /**
   * access=single-host (shared filesystems): refused while another host has the volume mounted.
   * A gone host's mount (its lease expired, so it cannot unmount by itself) is taken over when the
   * volume says preempt=true or the config says hosts.takeOverGone; always logged. A live host's
   * mount is never taken: its containers may still be writing.
   */
  async claimSingleHost(vol: VolumeRecord, log: Logger): Promise<void> {
    const others = (await this.store.getMounts(vol.name)).filter((m) => m.host !== this.host);
    if (others.length === 0) return;
    const goneHost = await goneHosts(this.store);
    const preempt = vol.options.preempt === true;
    for (const m of others) {
      const gone = goneHost.get(m.host);
      if (gone && (preempt || this.takeOverGone)) {
        log.warn(
          { from: m.host, refs: totalRefs(m), by: preempt ? 'preempt=true' : 'hosts.takeOverGone' },
          'single-host volume: taking it over from a gone host',
        );
        await this.store.deleteMount(vol.name, m.host);
        continue;
      }
      throw new StowageError(
        'IN_USE',
        `volume ${vol.name} is single-host (access=single-host) and mounted on host ${m.host}` +
          (gone
            ? ', which is gone (its lease expired); once you know it is down, create the volume with ' +
              'preempt=true (or set hosts.takeOverGone) to take it over'
            : '; unmount it there first'),
      );
    }
  }

  /**
   * Whether this host's recorded `attachment` may be mounted as it is: recorded as attached, and
   * still so in the driver's eyes (a loop device may back another image after a reboot). When not,
   * the caller attaches afresh; the device the record named is left alone, it is not ours now.
   */
  async holds(
    vol: VolumeRecord,
    driver: Driver,
    attachment: AttachmentRecord | undefined,
    log: Logger,
  ): Promise<boolean> {
    if (attachment?.state !== 'attached') return false;
    if (!driver.attachmentHolds || (await driver.attachmentHolds(vol, attachment))) return true;
    log.warn(
      { device: attachment.device },
      'the recorded attachment no longer holds (its device does not show this volume); attaching afresh',
    );
    return false;
  }

  /** The attachment as this host sees it: the local block device path in place of the cloud name. */
  async local(vol: VolumeRecord, driver: Driver, attachment: AttachmentRecord): Promise<AttachmentRecord> {
    if (!driver.localDevice) return attachment;
    return { ...attachment, device: await driver.localDevice(vol, attachment) };
  }

  /**
   * Detaches `vol` from the target and drops the record. Refused while the store shows any mount of
   * the volume on that host (Docker containers and pods alike), even one whose unmount is unfinished.
   */
  async detach(
    vol: VolumeRecord,
    driver: Driver,
    target: AttachTarget | undefined,
    log: Logger,
  ): Promise<void> {
    const host = target?.host ?? this.host;
    const attachment = (await this.store.getAttachments(vol.name)).find((a) => a.host === host);
    if (!attachment) return;
    const mounts = (await this.store.getMounts(vol.name)).filter((m) => m.host === host);
    if (mounts.length > 0) {
      const refs = mounts.reduce((n, m) => n + totalRefs(m), 0);
      throw new StowageError(
        'IN_USE',
        refs > 0
          ? `volume ${vol.name} has ${refs} active mount${refs === 1 ? '' : 's'} on host ${host}; it is detached after the last one ends`
          : `volume ${vol.name} is still mounted on host ${host} (an unmount did not finish); stowage on that host finishes it first`,
      );
    }
    await this.store.putAttachment({
      ...attachment,
      state: 'detaching',
      updatedAt: new Date().toISOString(),
    });
    if (driver.detach) await driver.detach(vol, attachment, target);
    await this.store.deleteAttachment(vol.name, host);
    log.info({ device: attachment.device, from: host }, 'detached');
  }

  /**
   * Attachments to other hosts block this one. A live host's (or any host's, when the store has no
   * leases) is taken over only with preempt=true and when the store shows it has no mount there;
   * the driver then takes it over in the cloud. A gone host (its lease expired) cannot let go by
   * itself: with preempt=true (or hosts.takeOverGone) its attachment is force-detached here and its
   * stale records dropped; always logged.
   */
  private async refuseOrReleaseOthers(
    vol: VolumeRecord,
    driver: Driver,
    all: AttachmentRecord[],
    host: string,
    log: Logger,
  ): Promise<AttachmentRecord[]> {
    const others = all.filter((a) => a.host !== host);
    if (others.length === 0) return [];
    const mounts = await this.store.getMounts(vol.name);
    const goneHost = await goneHosts(this.store);
    const preempt = vol.options.preempt === true;
    const release: AttachmentRecord[] = [];
    for (const o of others) {
      const used = mounts.filter((m) => m.host === o.host);
      const refs = used.reduce((n, m) => n + totalRefs(m), 0);
      if (goneHost.has(o.host)) {
        const registered = goneHost.get(o.host);
        if (!preempt && !this.takeOverGone) {
          throw new StowageError(
            'IN_USE',
            `volume ${vol.name} is attached to host ${o.host}, which is gone (its lease expired${registered ? `; registered ${registered.lastSeen}` : ''}); ` +
              'once you know it is down, create the volume with preempt=true (or set hosts.takeOverGone) to take it over',
          );
        }
        log.warn({ from: o.host, to: host, staleMounts: refs }, 'taking the volume over from a gone host');
        if (driver.detach) {
          await driver.detach(
            vol,
            o,
            { host: o.host, identity: registered?.identity ?? {} },
            { force: true },
          );
        }
        for (const m of used) await this.store.deleteMount(vol.name, m.host);
        await this.store.deleteAttachment(vol.name, o.host);
        continue;
      }
      refuseTakeOverUnlessAllowed(vol, hostHolder(`host ${o.host}`, used));
      log.warn({ from: o.host, to: host }, 'preempt: taking the volume over from another host');
      release.push(o);
    }
    return release;
  }
}
