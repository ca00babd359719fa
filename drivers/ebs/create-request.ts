import { createHash } from 'node:crypto';
import { type CreateVolumeInput, StowageError } from '../../src/index.js';
import type { EbsOptions } from './options.js';

/** Carries the Create's ClientToken: finds the volume an interrupted Create made before noting it. */
export const CREATE_TOKEN_TAG = 'stowage.io/create-token';

/** The CreateVolume ClientToken of one volume record (EC2 allows 64 characters). */
export function createToken(name: string, createdAt: string): string {
  return createHash('sha256').update(`stowage\0${name}\0${createdAt}`).digest('hex').slice(0, 64);
}

/** The CreateVolume request for volume `name` with options `o`, tagged with its name and token. */
export function createRequest(
  name: string,
  o: EbsOptions,
  az: string,
  clientToken: string,
  snapshotId: string | undefined,
): CreateVolumeInput {
  return {
    clientToken,
    type: o.type,
    availabilityZone: az,
    tags: { ...(o.tags ?? {}), Name: name, 'stowage.io/volume': name, [CREATE_TOKEN_TAG]: clientToken },
    ...(o.size !== undefined ? { sizeGiB: o.size } : {}),
    ...(o.iops !== undefined ? { iops: o.iops } : {}),
    ...(o.throughput !== undefined ? { throughput: o.throughput } : {}),
    // A KMS key implies encryption; EC2 refuses the key without Encrypted=true.
    ...(o.encrypted !== undefined || o.kmsKeyId !== undefined ? { encrypted: o.encrypted ?? true } : {}),
    ...(o.kmsKeyId !== undefined ? { kmsKeyId: o.kmsKeyId } : {}),
    ...(snapshotId !== undefined ? { snapshotId } : {}),
  };
}

/**
 * EC2's refusal of the request (an unknown zone, a size or IOPS beyond what the type allows) as an
 * INVALID_ARGUMENT that names what was asked; anything else passes through.
 */
export function refusedVolume(err: StowageError, name: string, o: EbsOptions, az: string): StowageError {
  if (err.code !== 'INVALID_ARGUMENT') return err;
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
