import { type ParsedOptions, parseOptions, StowageError } from '../../src/index.js';
import type { EbsConfig } from './config.js';
import { EBS_OPTION_SPECS, type EbsOptions } from './options.js';

const IOPS_TYPES = new Set(['gp3', 'io1', 'io2']);
/** The smallest volume of each type, in GiB (EC2 refuses smaller ones). */
export const MIN_SIZE: Record<string, number> = {
  gp3: 1,
  gp2: 1,
  io1: 4,
  io2: 4,
  st1: 125,
  sc1: 125,
  standard: 1,
};
/** Options that shape a new volume: meaningless for one adopted as it is. */
const SHAPING = ['size', 'type', 'iops', 'throughput', 'encrypted', 'kmsKeyId', 'availabilityZone', 'tags'];

/**
 * The options of an EBS volume with the config's defaults, and the rules across options that one
 * option's schema cannot see (which combinations EC2 would refuse, and the floors of each type).
 */
export function parseEbsOptions(
  raw: Record<string, string>,
  cfg: Pick<EbsConfig, 'defaultType' | 'defaultFsType' | 'defaultSizeGiB'>,
): ParsedOptions<EbsOptions> {
  const lower = new Set(Object.keys(raw).map((k) => k.toLowerCase()));
  const fromExisting = ['snapshotid', 'snapshottag', 'volumeid'].some((k) => lower.has(k));
  const parsed = parseOptions<EbsOptions>('ebs', EBS_OPTION_SPECS, raw, {
    type: cfg.defaultType,
    fsType: cfg.defaultFsType,
    snapshotTagName: 'Name',
    preempt: 'false',
    ...(fromExisting ? {} : { size: String(cfg.defaultSizeGiB) }),
  });
  const o = parsed.values;
  const given = new Set(parsed.given);
  const bad = (msg: string) => new StowageError('INVALID_ARGUMENT', `driver ebs: ${msg}`);
  const sources = (['snapshotId', 'snapshotTag', 'volumeId'] as const).filter((k) => o[k] !== undefined);
  if (sources.length > 1) throw bad(`give only one of ${sources.join(', ')}`);
  if (o.volumeId !== undefined) {
    const shaping = SHAPING.filter((k) => given.has(k));
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
  return parsed;
}
