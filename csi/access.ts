import type { DriverTraits } from '../drivers/catalog.js';
import { StowageError } from '../src/base/errors.js';
import type { AccessModeName, VolumeCapability } from './proto/messages.js';

/** Modes where one node at a time uses the volume: what a block device (ebs, a local image) allows. */
const SINGLE_NODE: ReadonlySet<AccessModeName> = new Set([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);
const MULTI_NODE: ReadonlySet<AccessModeName> = new Set([
  'MULTI_NODE_READER_ONLY',
  'MULTI_NODE_SINGLE_WRITER',
  'MULTI_NODE_MULTI_WRITER',
]);
const READ_ONLY: ReadonlySet<AccessModeName> = new Set(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY']);

/** The access modes a driver's volumes support: every mode for a network filesystem. */
export function supportedModes(traits: DriverTraits): AccessModeName[] {
  return traits.multiNode ? [...SINGLE_NODE, ...MULTI_NODE] : [...SINGLE_NODE];
}

/**
 * Why this driver cannot serve a capability, or undefined when it can. Only the mount access type
 * is served (a raw block device is not handed to pods yet: docs/csi.md).
 */
export function unsupportedReason(
  traits: DriverTraits,
  cap: VolumeCapability | null | undefined,
): string | undefined {
  if (!cap) return 'a volume capability is missing';
  if (cap.accessType === 'block') return 'the block access type is not supported (only mount)';
  if (cap.accessType !== 'mount') return 'the volume capability names no access type (block or mount)';
  const mode = cap.accessMode?.mode;
  if (mode === undefined || mode === 'UNKNOWN' || typeof mode === 'number') {
    return `the access mode ${mode === undefined ? 'is missing' : `${JSON.stringify(mode)} is not known`}`;
  }
  if (!supportedModes(traits).includes(mode)) {
    return `access mode ${mode} is not supported: these volumes can be used by one node at a time (${[...SINGLE_NODE].join(', ')})`;
  }
  return undefined;
}

/** Checks every capability of a request; INVALID_ARGUMENT naming the first one that cannot be served. */
export function requireCapabilities(
  traits: DriverTraits,
  caps: readonly (VolumeCapability | null)[] | undefined,
  what = 'volume_capabilities',
): void {
  if (!caps || caps.length === 0) {
    throw new StowageError('INVALID_ARGUMENT', `${what} is missing: give at least one volume capability`);
  }
  for (const cap of caps) {
    const why = unsupportedReason(traits, cap);
    if (why) throw new StowageError('INVALID_ARGUMENT', `${what}: ${why}`);
  }
}

/** Whether the capability's mode only reads (the volume is then mounted read-only). */
export function isReadOnlyMode(cap: VolumeCapability | null | undefined): boolean {
  const mode = cap?.accessMode?.mode;
  return typeof mode === 'string' && READ_ONLY.has(mode);
}
