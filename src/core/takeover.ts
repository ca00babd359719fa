import { StowageError } from '../base/errors.js';
import { type MountRecord, totalRefs, type VolumeRecord } from '../state/store.js';

/**
 * Who holds a volume another host (or instance) wants, as the store knows it. `label` names the
 * holder in messages ("host node-b", "instance i-1 (host node-b)"); `activeMounts`, when given, is
 * said after it; `use` is what the store proves: `unknown` when the holder is no stowage host, so
 * nothing shows whether the volume is in use there.
 */
export interface Holder {
  label: string;
  activeMounts?: number;
  use: 'unused' | 'used' | 'unknown';
}

/**
 * A host as its mount records of the volume show it: any record counts as use, even one whose
 * unmount did not finish (0 refs), and the count is said only when there are records.
 */
export function hostHolder(label: string, mountsThere: MountRecord[]): Holder {
  const refs = mountsThere.reduce((n, m) => n + totalRefs(m), 0);
  return {
    label,
    ...(mountsThere.length > 0 ? { activeMounts: refs } : {}),
    use: mountsThere.length > 0 ? 'used' : 'unused',
  };
}

/**
 * The take-over (preempt) rule, one for the attacher and the drivers that take volumes over in
 * the cloud: a volume held elsewhere is taken only when it was created with preempt=true and the
 * store proves nobody uses it there. Throws IN_USE saying why not, and what to do; returns when
 * the take-over may go ahead (the caller logs it and releases the holder).
 */
export function refuseTakeOverUnlessAllowed(volume: VolumeRecord, holder: Holder): void {
  const n = holder.activeMounts;
  const desc =
    `volume ${volume.name} is attached to ${holder.label}` +
    (n !== undefined ? ` with ${n} active mount${n === 1 ? '' : 's'}` : '');
  if (volume.options.preempt !== true) {
    throw new StowageError(
      'IN_USE',
      `${desc}; release it there, or create the volume with preempt=true to take it over`,
    );
  }
  if (holder.use === 'unknown') {
    throw new StowageError(
      'IN_USE',
      `${desc}; nothing proves it is unused there, so it is not force-detached`,
    );
  }
  if (holder.use === 'used') {
    throw new StowageError('IN_USE', `${desc}; preempt takes a volume only when nobody uses it`);
  }
}
