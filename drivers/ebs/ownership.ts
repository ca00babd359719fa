import { type AttachmentRecord, type Ec2Volume, StowageError } from '../../src/index.js';
import { canonical } from './allocator.js';

export type Ec2Attachment = Ec2Volume['attachments'][number];

/**
 * Whether an attachment EC2 shows was made by stowage: the store records an attachment of the
 * volume to that host under the same device name (sdf and xvdf being one name). The record names
 * the device before AttachVolume is called (AttachRecords.noteDevice), so an attach of ours that
 * was interrupted is still recognized; a record without a name is an attach that never reached
 * EC2. Anything else was attached by someone else: stowage neither uses nor detaches it.
 */
export function madeByStowage(a: Ec2Attachment, record: AttachmentRecord | undefined): boolean {
  return record !== undefined && record.device !== '' && canonical(record.device) === canonical(a.device);
}

/** The refusal for an attachment stowage did not make, with the deliberate way to hand it over. */
export function notOurAttachment(
  volume: string,
  volumeId: string,
  a: Ec2Attachment,
  where: string,
): StowageError {
  return new StowageError(
    'IN_USE',
    `volume ${volume} (EBS ${volumeId}) is attached to instance ${a.instanceId}${where} as ${a.device}, ` +
      'and stowage did not attach it (the store records no such attachment): stowage never uses or ' +
      'detaches an attachment it did not make. To hand the volume to stowage, stop what uses it ' +
      `there, unmount it and detach it yourself (aws ec2 detach-volume --volume-id ${volumeId} ` +
      `--instance-id ${a.instanceId}), then try again: stowage then attaches it itself`,
  );
}
