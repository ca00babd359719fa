import type { Logger } from 'pino';
import { type AttachmentRecord, type StateStore, totalRefs, type VolumeRecord } from '../state/store.js';
import type { AttachTarget, Driver } from './driver.js';
import { StowageError } from './errors.js';

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
    const others = await this.refuseOrReleaseOthers(vol, all, host, log);
    const previous = all.find((a) => a.host === host);
    await this.store.putAttachment({
      volume: vol.name,
      host,
      device: previous?.device ?? '',
      state: 'attaching',
      updatedAt: new Date().toISOString(),
    });
    const { device } = await driver.attach(vol, target);
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
   * Attachments to other hosts block this one unless the volume allows preemption and the store
   * proves those hosts do not use it; the driver then takes the volume over in the cloud.
   */
  private async refuseOrReleaseOthers(
    vol: VolumeRecord,
    all: AttachmentRecord[],
    host: string,
    log: Logger,
  ): Promise<AttachmentRecord[]> {
    const others = all.filter((a) => a.host !== host);
    if (others.length === 0) return [];
    const mounts = await this.store.getMounts(vol.name);
    for (const o of others) {
      const used = mounts.filter((m) => m.host === o.host);
      const refs = used.reduce((n, m) => n + totalRefs(m), 0);
      const desc = `volume ${vol.name} is attached to host ${o.host}${used.length > 0 ? ` with ${refs} active mount${refs === 1 ? '' : 's'}` : ''}`;
      if (vol.options.preempt !== true) {
        throw new StowageError(
          'IN_USE',
          `${desc}; release it there, or create the volume with preempt=true to take it over`,
        );
      }
      if (used.length > 0)
        throw new StowageError('IN_USE', `${desc}; preempt takes a volume only when nobody uses it`);
      log.warn({ from: o.host, to: host }, 'preempt: taking the volume over from another host');
    }
    return others;
  }
}
