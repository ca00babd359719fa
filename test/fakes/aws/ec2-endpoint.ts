import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { mkdir, open, readFile, readlink, rm, symlink, truncate } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import { LoopbackEndpoint, readBody } from './http-endpoint.js';
import { InjectedFailures } from './injected-failures.js';
import { FakeNetwork } from './network.js';

/**
 * A stateful EC2 endpoint for tests: the EC2 Query protocol (form-encoded POST, XML answers) on
 * 127.0.0.1, good enough for the real @aws-sdk/client-ec2 to create, describe, attach, detach and
 * delete EBS volumes. State changes take `stateDelayMs` and are computed from timestamps, so a
 * test sees `creating`/`attaching`/`detaching` first, as on AWS.
 *
 * With `blockDevices`, volumes are real: a sparse image file per volume, and an attachment that
 * reaches `attached` becomes a loop device over it `deviceDelayMs` later (as on EC2, where the disk
 * shows up in the instance a moment after the API says `attached`), named as the instance's kind
 * names it: the requested name, its Xen rename (/dev/sdf appears as /dev/xvdf), or Nitro's
 * /dev/nvmeNn1 with its by-id link `nvme-Amazon_Elastic_Block_Store_vol…`.
 *
 * A detach of a device still mounted (its loop device is a mount source here, or a test holds it)
 * stays `busy` until it is unmounted, unless `Force` is given. A volume just created is missing
 * from DescribeVolumes for `consistencyDelayMs` (eventual consistency).
 *
 * ModifyVolume grows a volume: the modification is `modifying` for one delay, then `optimizing`
 * (from then on the new size is usable: the image file has grown and each loop device over it
 * has been told with `losetup -c`; no reply says `optimizing` before that), then `completed`.
 * DescribeVolumes reports the new size from the ModifyVolume on, as EC2 does.
 *
 * CreateSnapshot takes a snapshot of a volume: `pending` for the `snapshot` delay (its progress
 * growing meanwhile), then `completed`; with blockDevices its contents are the volume's image file
 * as it was at the CreateSnapshot (the bytes a volume made from it gets). A volume cannot be made
 * from a snapshot that is not `completed` yet. DeleteSnapshot forgets it (and its image).
 */

export const EC2_XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';
const GiB = 1024 ** 3;
const COMMAND_TIMEOUT_MS = 15_000;
const MAX_BODY_BYTES = 1024 * 1024;

// --- small XML builder -------------------------------------------------------------------------

type XmlScalar = string | number | boolean | Date;
interface XmlEl {
  readonly name: string;
  readonly text?: string;
  readonly children?: readonly XmlEl[];
}
type XmlChild = XmlEl | undefined;

const XML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

/** Characters XML 1.0 cannot carry at all (C0 controls other than tab/newline/CR, U+FFFE/FFFF). */
function xmlForbidden(code: number): boolean {
  return (
    (code < 0x20 && code !== 0x09 && code !== 0x0a && code !== 0x0d) || code === 0xfffe || code === 0xffff
  );
}

/** Text and attribute escaping; characters XML cannot carry become U+FFFD. */
export function escapeXml(s: string): string {
  let out = '';
  for (const c of s) {
    const code = c.codePointAt(0) ?? 0;
    out += xmlForbidden(code) ? '\ufffd' : (XML_ESCAPES[c] ?? c);
  }
  return out;
}

function leaf(name: string, value: XmlScalar | undefined): XmlChild {
  if (value === undefined) return undefined;
  return { name, text: value instanceof Date ? value.toISOString() : String(value) };
}

function el(name: string, ...children: XmlChild[]): XmlEl {
  return { name, children: children.filter((c): c is XmlEl => c !== undefined) };
}

/** An EC2 list: `<name><item>…</item><item>…</item></name>`. */
function items(name: string, rows: readonly XmlChild[][]): XmlEl {
  return { name, children: rows.map((row) => el('item', ...row)) };
}

function renderXml(node: XmlEl, attrs = ''): string {
  if (node.text !== undefined) return `<${node.name}${attrs}>${escapeXml(node.text)}</${node.name}>`;
  if (!node.children || node.children.length === 0) return `<${node.name}${attrs}/>`;
  return `<${node.name}${attrs}>${node.children.map((c) => renderXml(c)).join('')}</${node.name}>`;
}

function xmlDocument(root: XmlEl, xmlns?: string): string {
  const attrs = xmlns ? ` xmlns="${escapeXml(xmlns)}"` : '';
  return `<?xml version="1.0" encoding="UTF-8"?>\n${renderXml(root, attrs)}`;
}

// --- public types ------------------------------------------------------------------------------

export interface FakeEc2BlockDevices {
  /** Where `<volumeId>.img` backing files live. */
  imageDir: string;
  /** Where Xen-style links `<basename of requested device>` are made (e.g. /dev or a temp dir). */
  devDir: string;
  /** Where NVMe links `nvme-Amazon_Elastic_Block_Store_vol…` are made (e.g. /dev/disk/by-id). */
  byIdDir: string;
  /** Nitro naming for every instance (see FakeInstanceSpec.naming for one instance). */
  nvme?: boolean;
  /**
   * Unit tests: attachments are links to this block device node instead of loop devices over
   * image files (no image files, no losetup, nothing the machine shares).
   */
  node?: string;
}

/** How an instance's kernel names an attached EBS disk. */
export type FakeDeviceNaming = 'requested' | 'xen' | 'nvme';

export type FakeEc2Transition =
  | 'create'
  | 'delete'
  | 'attach'
  | 'detach'
  | 'modify'
  | 'optimize'
  | 'snapshot';

export interface FakeEc2Options {
  /** How long creating/deleting/attaching/detaching last (default 50 ms). */
  stateDelayMs?: number;
  /** Per-transition overrides of stateDelayMs. */
  delays?: Partial<Record<FakeEc2Transition, number>>;
  /** Default us-east-1. */
  region?: string;
  /** Default `${region}a`, `${region}b`, `${region}c`. */
  availabilityZones?: string[];
  blockDevices?: FakeEc2BlockDevices;
  /** Account id reported as ownerId (default 123456789012). */
  ownerId?: string;
  /** How long after `attached` the block device appears in the instance (default 150 ms). */
  deviceDelayMs?: number;
  /** How long a new volume is missing from DescribeVolumes (default 0). */
  consistencyDelayMs?: number;
}

export interface FakeInstanceSpec {
  instanceId: string;
  availabilityZone: string;
  /** Default ip-10-0-0-N.ec2.internal. */
  privateDnsName?: string;
  /** Device names taken by other disks (the first is the root device); default ['/dev/xvda']. */
  usedDevices?: string[];
  /**
   * Whether attachments to this instance become loop devices (only with the fake's blockDevices;
   * default true). An object overrides the fake's link directories for this instance, so two
   * simulated hosts on one machine do not share /dev names.
   */
  blockDevices?: boolean | { devDir?: string; byIdDir?: string };
  /** Xen renames sdX to xvdX, Nitro shows NVMe disks; default `requested` (nvme with blockDevices.nvme). */
  naming?: FakeDeviceNaming;
}

export interface FakeSnapshotSpec {
  snapshotId: string;
  sizeGiB: number;
  tags?: Record<string, string>;
  /** A file whose bytes become the contents of volumes created from this snapshot (blockDevices). */
  image?: string;
  description?: string;
  /** Default now: which of several snapshots with one tag is the newest. */
  startTime?: Date;
  /** The volume it was taken of (default vol-ffffffff, as EC2 shows for copied snapshots). */
  volumeId?: string;
  /** Default completed. */
  state?: FakeSnapshotState;
}

export type FakeSnapshotState = 'pending' | 'completed' | 'error';

/** A snapshot as it is now (see FakeEc2.snapshot). */
export interface FakeSnapshot {
  snapshotId: string;
  volumeId: string;
  state: FakeSnapshotState;
  sizeGiB: number;
  tags: Record<string, string>;
  description: string;
  startTime: Date;
  /** The file holding its contents (blockDevices), if any. */
  image?: string;
}

export interface FakeEc2Failure {
  /** The error code, e.g. RequestLimitExceeded, InternalError, UnauthorizedOperation. */
  code: string;
  message?: string;
  /** Default: 503 for throttling and unavailability codes, 500 for InternalError, else 400. */
  status?: number;
  /** How many of the next calls fail (default 1). */
  times?: number;
  /** Never answer these calls (until stop()); code/status are then unused. */
  stall?: boolean;
}

export interface Ec2Call {
  action: string;
  /** The form parameters except Action and Version. */
  params: Record<string, string>;
  at: number;
  /** The error code answered, if any. */
  error?: string;
}

export type VolumeState = 'creating' | 'available' | 'in-use' | 'deleting' | 'deleted' | 'error';
export type AttachmentState = 'attaching' | 'attached' | 'detaching' | 'detached' | 'busy';
export type ModificationState = 'modifying' | 'optimizing' | 'completed' | 'failed';

export interface FakeModification {
  state: ModificationState;
  originalSizeGiB: number;
  targetSizeGiB: number;
  startTime: Date;
}

export interface FakeAttachment {
  volumeId: string;
  instanceId: string;
  device: string;
  state: AttachmentState;
  attachTime: Date;
  /** Stated by attachElsewhere(). */
  foreign: boolean;
  /** /dev/loopN while the block device exists. */
  loopDevice?: string;
  /** The symlink made for it (devDir/xvdf or byIdDir/nvme-…). */
  link?: string;
}

export interface FakeVolume {
  volumeId: string;
  state: VolumeState;
  sizeGiB: number;
  volumeType: string;
  iops?: number;
  throughput?: number;
  encrypted: boolean;
  kmsKeyId?: string;
  snapshotId?: string;
  availabilityZone: string;
  createTime: Date;
  tags: Record<string, string>;
  clientToken?: string;
  imagePath?: string;
  /** Attachments not yet detached. */
  attachments: FakeAttachment[];
  /** The latest ModifyVolume, if any. */
  modification?: FakeModification;
}

export interface AttachmentEvent {
  at: number;
  type: AttachmentState;
  volumeId: string;
  instanceId: string;
  device: string;
  foreign: boolean;
}

// --- internal state ----------------------------------------------------------------------------

type Params = Readonly<Record<string, string>>;

class Ec2ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

interface Tag {
  key: string;
  value: string;
}

interface AttachmentRec {
  readonly volumeId: string;
  readonly instanceId: string;
  readonly device: string;
  readonly attachTime: Date;
  readonly requestedAt: number;
  /** When it becomes attached; Infinity while stuck or if detached before that. */
  attachedAt: number;
  detachRequestedAt?: number;
  detachedAt?: number;
  readonly foreign: boolean;
  /** A detach was asked while the device was in use, without Force: `busy` until it is not. */
  busy?: boolean;
  /** A test says the instance uses the device (as a mount would). */
  held?: boolean;
  loopDevice?: string;
  /** The device links made in the instance, the device's own name first. */
  links?: string[];
  materializeFailed?: boolean;
}

interface ModificationRec {
  readonly originalSizeGiB: number;
  readonly targetSizeGiB: number;
  readonly startTime: Date;
  readonly optimizingAt: number;
  readonly completedAt: number;
  /** The image file and the loop devices over it have the new size. */
  grown: boolean;
  /** failModifications(): fails instead of optimizing, with this status message. */
  failure?: string;
}

interface VolumeRec {
  readonly volumeId: string;
  sizeGiB: number;
  readonly volumeType: string;
  readonly iops?: number;
  readonly throughput?: number;
  readonly encrypted: boolean;
  readonly kmsKeyId?: string;
  readonly snapshotId?: string;
  readonly availabilityZone: string;
  readonly createTime: Date;
  availableAt: number;
  /** Until then DescribeVolumes does not show it (eventual consistency). */
  visibleAt: number;
  deleteRequestedAt?: number;
  deletedAt?: number;
  readonly tags: Tag[];
  readonly clientToken?: string;
  readonly paramsKey: string;
  imagePath?: string;
  stickAttaching: boolean;
  /** failCreates(): ends in `error` instead of `available`. */
  failed?: boolean;
  readonly attachments: AttachmentRec[];
  /** Oldest first; EC2 shows only the latest. */
  readonly modifications: ModificationRec[];
}

interface InstanceRec {
  readonly instanceId: string;
  readonly availabilityZone: string;
  readonly privateDnsName: string;
  readonly usedDevices: readonly string[];
  readonly blockDevices: boolean;
  readonly devDir?: string;
  readonly byIdDir?: string;
  readonly naming: FakeDeviceNaming;
  readonly launchTime: Date;
}

interface SnapshotRec {
  readonly snapshotId: string;
  readonly volumeId: string;
  readonly sizeGiB: number;
  readonly tags: Tag[];
  image?: string;
  /** The image is the fake's own copy of a volume (deleted with the snapshot), not a test's file. */
  readonly ownImage: boolean;
  readonly description: string;
  readonly startTime: Date;
  /** When it becomes `completed` (Infinity: never; see `failed`). */
  readonly completedAt: number;
  readonly failed: boolean;
}

interface VolumeTypeRule {
  min: number;
  max: number;
  iops: 'none' | 'optional' | 'required';
  iopsRange?: [number, number];
  throughput: boolean;
}

const VOLUME_TYPES: Record<string, VolumeTypeRule> = {
  // As documented by the SDK the project ships (@aws-sdk/client-ec2 CreateVolumeRequest).
  gp3: { min: 1, max: 65536, iops: 'optional', iopsRange: [3000, 80000], throughput: true },
  gp2: { min: 1, max: 16384, iops: 'none', throughput: false },
  io1: { min: 4, max: 16384, iops: 'required', iopsRange: [100, 64000], throughput: false },
  io2: { min: 4, max: 65536, iops: 'required', iopsRange: [100, 256000], throughput: false },
  st1: { min: 125, max: 16384, iops: 'none', throughput: false },
  sc1: { min: 125, max: 16384, iops: 'none', throughput: false },
  standard: { min: 1, max: 1024, iops: 'none', throughput: false },
};

const THROTTLING_CODES = new Set([
  'RequestLimitExceeded',
  'Throttling',
  'ThrottlingException',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'ServiceUnavailable',
  'Unavailable',
]);

const DEVICE_NAME = /^\/dev\/(sd|xvd)[a-z]{1,2}\d*$/;
const VOLUME_ID = /^vol-[0-9a-f]{8,17}$/;
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
const SNAPSHOT_ID = /^snap-[0-9a-f]{8,17}$/;

function defaultStatus(code: string): number {
  if (THROTTLING_CODES.has(code)) return 503;
  if (code === 'InternalError' || code === 'InternalFailure') return 500;
  return 400;
}

// --- query parameter helpers -------------------------------------------------------------------

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `Prefix.N.Rest=v` → one record per N (ascending), keyed by Rest. */
function structList(params: Params, prefix: string): Record<string, string>[] {
  const re = new RegExp(`^${escapeRegExp(prefix)}\\.(\\d+)\\.(.+)$`);
  const byIndex = new Map<number, Record<string, string>>();
  for (const [k, v] of Object.entries(params)) {
    const m = re.exec(k);
    if (!m) continue;
    const n = Number(m[1]);
    let rec = byIndex.get(n);
    if (!rec) {
      rec = {};
      byIndex.set(n, rec);
    }
    rec[m[2] ?? ''] = v;
  }
  return [...byIndex.entries()].sort(([a], [b]) => a - b).map(([, r]) => r);
}

/** `Prefix.N=v` → values in N order. */
function scalarList(params: Params, prefix: string): string[] {
  const re = new RegExp(`^${escapeRegExp(prefix)}\\.(\\d+)$`);
  const out: [number, string][] = [];
  for (const [k, v] of Object.entries(params)) {
    const m = re.exec(k);
    if (m) out.push([Number(m[1]), v]);
  }
  return out.sort(([a], [b]) => a - b).map(([, v]) => v);
}

interface Filter {
  name: string;
  values: string[];
}

function filters(params: Params): Filter[] {
  return structList(params, 'Filter').map((f) => ({
    name: f.Name ?? '',
    values: scalarList(f, 'Value'),
  }));
}

/** EC2 filter values may use `*` and `?` wildcards; a backslash makes the next character literal. */
function globMatch(pattern: string, value: string): boolean {
  if (!/[*?\\]/.test(pattern)) return pattern === value;
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (c === '\\' && i + 1 < pattern.length) re += escapeRegExp(pattern[++i] ?? '');
    else re += c === '*' ? '.*' : c === '?' ? '.' : escapeRegExp(c);
  }
  return new RegExp(`^${re}$`, 's').test(value);
}

/** A resource passes when every filter has some value matching some candidate. */
function passes(fs: Filter[], candidates: (name: string) => string[] | undefined): boolean {
  for (const f of fs) {
    const have = candidates(f.name);
    if (have === undefined)
      throw new Ec2ApiError('InvalidParameterValue', `The filter '${f.name}' is invalid`);
    if (!f.values.some((p) => have.some((h) => globMatch(p, h)))) return false;
  }
  return true;
}

function tagCandidates(name: string, tags: Tag[]): string[] | undefined {
  if (name.startsWith('tag:')) {
    const key = name.slice(4);
    return tags.filter((t) => t.key === key).map((t) => t.value);
  }
  if (name === 'tag-key') return tags.map((t) => t.key);
  if (name === 'tag-value') return tags.map((t) => t.value);
  return undefined;
}

/** The tags of `TagSpecification.N` for the one resource type the operation makes. */
function tagSpecifications(p: Params, resourceType: string): Tag[] {
  const tags: Tag[] = [];
  for (const spec of structList(p, 'TagSpecification')) {
    if (spec.ResourceType !== resourceType) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `'${spec.ResourceType ?? ''}' is not a valid taggable resource type for this operation.`,
      );
    }
    for (const t of structList(spec, 'Tag')) {
      if (t.Key === undefined || t.Key === '') {
        throw new Ec2ApiError('InvalidParameterValue', 'Tag keys must not be empty.');
      }
      if (tags.some((x) => x.key === t.Key)) {
        throw new Ec2ApiError('InvalidParameterValue', `Duplicate tag key '${t.Key}' specified.`);
      }
      tags.push({ key: t.Key, value: t.Value ?? '' });
    }
  }
  return tags;
}

function tagsXml(tags: Tag[]): XmlChild {
  if (tags.length === 0) return undefined;
  return items(
    'tagSet',
    tags.map((t) => [leaf('key', t.key), leaf('value', t.value)]),
  );
}

function tagRecord(tags: Tag[]): Record<string, string> {
  return Object.fromEntries(tags.map((t) => [t.key, t.value]));
}

function required(p: Params, name: string): string {
  const v = p[name];
  if (v === undefined || v === '') {
    throw new Ec2ApiError('MissingParameter', `The request must contain the parameter ${name}`);
  }
  return v;
}

function integer(p: Params, name: string): number | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) {
    throw new Ec2ApiError('InvalidParameterValue', `Value (${v}) for parameter ${name} is invalid.`);
  }
  return Number(v);
}

function bool(p: Params, name: string): boolean | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (v !== 'true' && v !== 'false') {
    throw new Ec2ApiError('InvalidParameterValue', `Value (${v}) for parameter ${name} is invalid.`);
  }
  return v === 'true';
}

function paginate<T>(all: T[], p: Params, idsGiven: boolean): { page: T[]; next?: string } {
  const max = integer(p, 'MaxResults');
  if (max === undefined) return { page: all };
  if (idsGiven) {
    throw new Ec2ApiError('InvalidParameterCombination', 'The parameter MaxResults cannot be used with ids');
  }
  if (max < 5 || max > 1000) {
    throw new Ec2ApiError('InvalidParameterValue', `Value (${max}) for parameter maxResults is invalid.`);
  }
  let start = 0;
  if (p.NextToken) {
    start = Number(Buffer.from(p.NextToken, 'base64url').toString());
    if (!Number.isInteger(start) || start < 0) {
      throw new Ec2ApiError('InvalidNextToken', 'The specified token is invalid.');
    }
  }
  const page = all.slice(start, start + max);
  const next = start + max < all.length ? Buffer.from(String(start + max)).toString('base64url') : undefined;
  return next === undefined ? { page } : { page, next };
}

function hexId(prefix: string): string {
  return `${prefix}-0${randomBytes(8).toString('hex')}`;
}

function attState(a: AttachmentRec, now: number): AttachmentState {
  if (a.detachedAt !== undefined && now >= a.detachedAt) return 'detached';
  if (a.busy) return 'busy';
  if (a.detachRequestedAt !== undefined) return 'detaching';
  return now >= a.attachedAt ? 'attached' : 'attaching';
}

function modState(m: ModificationRec, now: number): ModificationState {
  if (m.failure !== undefined && now >= m.optimizingAt) return 'failed';
  if (now >= m.completedAt) return 'completed';
  return now >= m.optimizingAt ? 'optimizing' : 'modifying';
}

function snapState(s: SnapshotRec, now: number): FakeSnapshotState {
  if (s.failed) return 'error';
  return now >= s.completedAt ? 'completed' : 'pending';
}

/** EC2's progress text: `0%` … `100%`, by the time elapsed of the snapshot's delay. */
function snapProgress(s: SnapshotRec, now: number): string {
  const state = snapState(s, now);
  if (state === 'completed') return '100%';
  if (state === 'error') return '0%';
  const total = s.completedAt - s.startTime.getTime();
  const done = total <= 0 ? 0 : (now - s.startTime.getTime()) / total;
  return `${Math.min(99, Math.max(0, Math.floor(done * 100)))}%`;
}

function volState(v: VolumeRec, now: number): VolumeState {
  if (v.deletedAt !== undefined && now >= v.deletedAt) return 'deleted';
  if (v.deleteRequestedAt !== undefined) return 'deleting';
  if (now < v.availableAt) return 'creating';
  if (v.failed) return 'error';
  return v.attachments.some((a) => attState(a, now) !== 'detached') ? 'in-use' : 'available';
}

// --- the fake ----------------------------------------------------------------------------------

export class FakeEc2 {
  /** Every request, in arrival order. */
  readonly calls: Ec2Call[] = [];
  /** Unexpected failures (loop devices, files, handler bugs); a test should expect none. */
  readonly errors: Error[] = [];
  /** How long state transitions last; may be changed between calls. */
  stateDelayMs: number;
  deviceDelayMs: number;
  consistencyDelayMs: number;
  readonly delays: Partial<Record<FakeEc2Transition, number>>;
  readonly region: string;
  readonly availabilityZones: readonly string[];
  readonly ownerId: string;

  private readonly vols = new Map<string, VolumeRec>();
  private readonly tokens = new Map<string, VolumeRec>();
  private readonly instances = new Map<string, InstanceRec>();
  private readonly snapshots = new Map<string, SnapshotRec>();
  private readonly history: AttachmentRec[] = [];
  private readonly failures = new InjectedFailures<FakeEc2Failure>();
  private createFailures = 0;
  private modificationFailure: string | undefined;
  private readonly stalled = new Set<ServerResponse>();
  private readonly blockDevices: FakeEc2BlockDevices | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Number.POSITIVE_INFINITY;
  private stopped = false;

  private constructor(
    private readonly http: LoopbackEndpoint,
    readonly url: string,
    opts: FakeEc2Options,
  ) {
    this.stateDelayMs = opts.stateDelayMs ?? 50;
    this.deviceDelayMs = opts.deviceDelayMs ?? 150;
    this.consistencyDelayMs = opts.consistencyDelayMs ?? 0;
    this.delays = { ...opts.delays };
    this.region = opts.region ?? 'us-east-1';
    this.availabilityZones = opts.availabilityZones ?? ['a', 'b', 'c'].map((s) => `${this.region}${s}`);
    this.ownerId = opts.ownerId ?? '123456789012';
    this.blockDevices = opts.blockDevices;
  }

  static async start(opts: FakeEc2Options = {}): Promise<FakeEc2> {
    const http = await LoopbackEndpoint.listen();
    const fake = new FakeEc2(http, http.url, opts);
    http.serveAsync(
      (req, res) => fake.onRequest(req, res),
      (err) => fake.errors.push(err),
    );
    return fake;
  }

  // --- test controls ---------------------------------------------------------------------------

  addInstance(spec: FakeInstanceSpec): void {
    if (!INSTANCE_ID.test(spec.instanceId)) throw new Error(`bad instance id ${spec.instanceId}`);
    if (!this.availabilityZones.includes(spec.availabilityZone)) {
      throw new Error(`unknown availability zone ${spec.availabilityZone}`);
    }
    const dirs = typeof spec.blockDevices === 'object' ? spec.blockDevices : {};
    this.instances.set(spec.instanceId, {
      instanceId: spec.instanceId,
      availabilityZone: spec.availabilityZone,
      privateDnsName: spec.privateDnsName ?? `ip-10-0-0-${this.instances.size + 10}.ec2.internal`,
      usedDevices: [...(spec.usedDevices ?? ['/dev/xvda'])],
      blockDevices: spec.blockDevices !== false,
      ...(dirs.devDir === undefined ? {} : { devDir: dirs.devDir }),
      ...(dirs.byIdDir === undefined ? {} : { byIdDir: dirs.byIdDir }),
      naming: spec.naming ?? (this.blockDevices?.nvme ? 'nvme' : 'requested'),
      launchTime: new Date(),
    });
  }

  addSnapshot(spec: FakeSnapshotSpec): void {
    if (!SNAPSHOT_ID.test(spec.snapshotId)) throw new Error(`bad snapshot id ${spec.snapshotId}`);
    if (spec.image !== undefined && statSync(spec.image).size > spec.sizeGiB * GiB) {
      throw new Error(`snapshot image ${spec.image} is larger than ${spec.sizeGiB} GiB`);
    }
    const state = spec.state ?? 'completed';
    this.snapshots.set(spec.snapshotId, {
      snapshotId: spec.snapshotId,
      volumeId: spec.volumeId ?? 'vol-ffffffff',
      sizeGiB: spec.sizeGiB,
      tags: Object.entries(spec.tags ?? {}).map(([key, value]) => ({ key, value })),
      ...(spec.image === undefined ? {} : { image: spec.image }),
      ownImage: false,
      description: spec.description ?? '',
      startTime: spec.startTime ?? new Date(),
      completedAt: state === 'completed' ? 0 : Number.POSITIVE_INFINITY,
      failed: state === 'error',
    });
  }

  /** The snapshot as it is now (undefined once deleted). */
  snapshot(snapshotId: string): FakeSnapshot | undefined {
    const s = this.snapshots.get(snapshotId);
    if (!s) return undefined;
    return {
      snapshotId: s.snapshotId,
      volumeId: s.volumeId,
      state: snapState(s, Date.now()),
      sizeGiB: s.sizeGiB,
      tags: tagRecord(s.tags),
      description: s.description,
      startTime: s.startTime,
      ...(s.image === undefined ? {} : { image: s.image }),
    };
  }

  /** Every snapshot not deleted, as it is now. */
  get snapshotList(): FakeSnapshot[] {
    return [...this.snapshots.keys()].map((id) => this.snapshot(id) as FakeSnapshot);
  }

  /**
   * The next `times` calls of `action` ('*' for any) fail with this error before doing anything.
   * Throttling: `{ code: 'RequestLimitExceeded' }` (HTTP 503).
   */
  failNext(action: string, failure: FakeEc2Failure): void {
    this.failures.add(action, failure);
  }

  /** The next `n` volumes created go from `creating` to `error` instead of `available`. */
  failCreates(n = 1): void {
    this.createFailures += n;
  }

  /** The next ModifyVolume fails (state `failed`, with this status message) instead of optimizing. */
  failModifications(statusMessage = 'Volume modification failed: internal error'): void {
    this.modificationFailure = statusMessage;
  }

  /** The volume is gone at once, as if deleted long ago elsewhere (no block device may be attached). */
  vanish(volumeId: string): void {
    const v = this.mustVolume(volumeId);
    const now = Date.now();
    v.deleteRequestedAt = now;
    v.deletedAt = now;
    for (const a of v.attachments) a.detachedAt ??= now;
  }

  /** EC2 no longer knows the instance (terminated long ago). */
  removeInstance(instanceId: string): void {
    this.instances.delete(instanceId);
  }

  /** Attachments of this volume made from now on stay `attaching`; `false` releases stuck ones. */
  stickAttaching(volumeId: string, stuck = true): void {
    const v = this.mustVolume(volumeId);
    v.stickAttaching = stuck;
    if (!stuck) {
      const now = Date.now();
      for (const a of v.attachments) {
        if (a.attachedAt === Number.POSITIVE_INFINITY && a.detachRequestedAt === undefined) {
          a.attachedAt = now + this.delay('attach');
        }
      }
      this.scheduleWake(now);
    }
  }

  /**
   * States that the volume is attached to another instance (e.g. a node that died): attached at
   * once, no block device here. The volume must not be attached already.
   */
  attachElsewhere(volumeId: string, instanceId: string, device = '/dev/xvdz'): void {
    const v = this.mustVolume(volumeId);
    const now = Date.now();
    const state = volState(v, now);
    if (state === 'in-use' || state === 'deleting' || state === 'deleted') {
      throw new Error(`attachElsewhere: ${volumeId} is ${state}`);
    }
    v.availableAt = Math.min(v.availableAt, now);
    const a: AttachmentRec = {
      volumeId,
      instanceId,
      device,
      attachTime: new Date(now),
      requestedAt: now,
      attachedAt: now,
      foreign: true,
    };
    v.attachments.push(a);
    this.history.push(a);
  }

  /**
   * The instance uses (true) or lets go of (false) the volume's attached device, as a mount of it
   * would: a detach without Force stays `busy` meanwhile.
   */
  holdDevice(volumeId: string, held = true): void {
    const a = this.mustVolume(volumeId).attachments.find((x) => attState(x, Date.now()) !== 'detached');
    if (!a) throw new Error(`holdDevice: ${volumeId} is not attached`);
    a.held = held;
    this.scheduleWake(Date.now());
  }

  /** The volumes not yet deleted, as they are now. */
  get volumes(): FakeVolume[] {
    const now = Date.now();
    return [...this.vols.values()]
      .filter((v) => volState(v, now) !== 'deleted')
      .map((v) => this.view(v, now));
  }

  volume(volumeId: string): FakeVolume | undefined {
    const v = this.vols.get(volumeId);
    return v ? this.view(v, Date.now()) : undefined;
  }

  /** Attach/detach transitions of every volume, in time order (attached/detached at the logical time). */
  get events(): AttachmentEvent[] {
    const now = Date.now();
    const order: Record<AttachmentState, number> = {
      detached: 0,
      busy: 1,
      detaching: 1,
      attaching: 2,
      attached: 3,
    };
    const out: AttachmentEvent[] = [];
    for (const a of this.history) {
      const base = { volumeId: a.volumeId, instanceId: a.instanceId, device: a.device, foreign: a.foreign };
      out.push({ ...base, at: a.requestedAt, type: 'attaching' });
      if (a.attachedAt <= now) out.push({ ...base, at: a.attachedAt, type: 'attached' });
      if (a.detachRequestedAt !== undefined)
        out.push({ ...base, at: a.detachRequestedAt, type: 'detaching' });
      if (a.detachedAt !== undefined && a.detachedAt <= now) {
        out.push({ ...base, at: a.detachedAt, type: 'detached' });
      }
    }
    return out.sort((x, y) => x.at - y.at || order[x.type] - order[y.type]);
  }

  /**
   * The most attachments (from `attaching` until `detached`) this volume ever had at one moment;
   * 1 proves it never was on two instances at once.
   */
  maxConcurrentAttachments(volumeId: string): number {
    let current = 0;
    let max = 0;
    for (const e of this.events) {
      if (e.volumeId !== volumeId) continue;
      if (e.type === 'attaching') max = Math.max(max, ++current);
      else if (e.type === 'detached') current--;
    }
    return max;
  }

  /** Applies due transitions (loop devices, links) now; requests and a timer do it anyway. */
  flush(): Promise<void> {
    return this.serialize(() => this.reconcile(Date.now()));
  }

  /** Closes the endpoint, then detaches every loop device and removes every link it made. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.wakeTimer);
    for (const res of this.stalled) res.destroy();
    this.stalled.clear();
    await this.http.close();
    await this.flush(); // stopped: every loop device and link goes
  }

  // --- HTTP ------------------------------------------------------------------------------------

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const raw = await readBody(req, MAX_BODY_BYTES);
    if (raw === 'gone') return; // the client went away (or stop() closed the connection)
    if (raw === 'too-large') {
      this.sendError(res, requestId, new Ec2ApiError('RequestEntityTooLarge', 'Request body too large', 413));
      return;
    }
    const query = req.method === 'GET' ? new URL(req.url ?? '/', this.url).search.slice(1) : '';
    const form = new URLSearchParams(req.method === 'GET' ? query : raw);
    const params: Record<string, string> = {};
    for (const [k, v] of form) params[k] = v;
    const action = params.Action ?? '';
    const { Action: _a, Version: _v, ...rest } = params;
    const call: Ec2Call = { action, params: rest, at: Date.now() };
    this.calls.push(call);

    const failure = this.failures.take(action);
    if (failure?.stall) {
      this.stalled.add(res);
      res.on('close', () => this.stalled.delete(res));
      return;
    }
    if (failure) {
      call.error = failure.code;
      const status = failure.status ?? defaultStatus(failure.code);
      this.sendError(res, requestId, new Ec2ApiError(failure.code, failure.message ?? failure.code, status));
      return;
    }

    try {
      const body = await this.serialize(async () => {
        const now = Date.now();
        await this.reconcile(now);
        return this.dispatch(action, rest, now);
      });
      res.writeHead(200, {
        'content-type': 'text/xml;charset=UTF-8',
        server: 'AmazonEC2',
        'x-amzn-requestid': requestId,
      });
      res.end(xmlDocument(el(`${action}Response`, leaf('requestId', requestId), ...body), EC2_XMLNS));
    } catch (err) {
      if (!(err instanceof Ec2ApiError)) this.errors.push(err as Error);
      const apiErr =
        err instanceof Ec2ApiError
          ? err
          : new Ec2ApiError('InternalError', `fake EC2: ${(err as Error).message}`, 500);
      call.error = apiErr.code;
      this.sendError(res, requestId, apiErr);
    }
  }

  private sendError(res: ServerResponse, requestId: string, err: Ec2ApiError): void {
    const doc = xmlDocument(
      el(
        'Response',
        el('Errors', el('Error', leaf('Code', err.code), leaf('Message', err.message))),
        leaf('RequestID', requestId),
      ),
    );
    res.writeHead(err.status, {
      'content-type': 'text/xml;charset=UTF-8',
      server: 'AmazonEC2',
      'x-amzn-requestid': requestId,
    });
    res.end(doc);
  }

  private async dispatch(action: string, p: Params, now: number): Promise<XmlChild[]> {
    const handler = this.handlers[action];
    if (!handler) {
      throw new Ec2ApiError(
        'InvalidAction',
        `The action ${action || '(none)'} is not valid for this web service.`,
      );
    }
    if (p.DryRun === 'true') {
      throw new Ec2ApiError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412);
    }
    return handler(p, now);
  }

  private readonly handlers: Record<string, (p: Params, now: number) => XmlChild[] | Promise<XmlChild[]>> = {
    CreateVolume: (p, now) => this.createVolume(p, now),
    DescribeVolumes: (p, now) => this.describeVolumes(p, now),
    DeleteVolume: (p, now) => this.deleteVolume(p, now),
    AttachVolume: (p, now) => this.attachVolume(p, now),
    DetachVolume: (p, now) => this.detachVolume(p, now),
    DescribeInstances: (p, now) => this.describeInstances(p, now),
    CreateSnapshot: (p, now) => this.createSnapshot(p, now),
    DeleteSnapshot: (p) => this.deleteSnapshot(p),
    DescribeSnapshots: (p, now) => this.describeSnapshots(p, now),
    DescribeAvailabilityZones: (p) => this.describeAvailabilityZones(p),
    ModifyVolume: (p, now) => this.modifyVolume(p, now),
    DescribeVolumesModifications: (p, now) => this.describeVolumesModifications(p, now),
    DescribeSubnets: (p) => this.describeSubnets(p),
    DescribeSecurityGroups: (p) => this.describeSecurityGroups(p),
  };

  // --- actions ---------------------------------------------------------------------------------

  private async createVolume(p: Params, now: number): Promise<XmlChild[]> {
    const token = p.ClientToken;
    const paramsKey = JSON.stringify(
      Object.entries(p)
        .filter(([k]) => k !== 'ClientToken' && k !== 'DryRun')
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    if (token !== undefined) {
      const earlier = this.tokens.get(token);
      if (earlier) {
        if (earlier.paramsKey !== paramsKey) {
          throw new Ec2ApiError(
            'IdempotentParameterMismatch',
            `The client token '${token}' was already used with different parameters.`,
          );
        }
        return this.volumeXml(earlier, now);
      }
    }

    const az = p.AvailabilityZone ?? this.zoneForId(p.AvailabilityZoneId);
    if (az === undefined) {
      throw new Ec2ApiError(
        'MissingParameter',
        'The request must contain the parameter AvailabilityZone or AvailabilityZoneId',
      );
    }
    if (!this.availabilityZones.includes(az)) {
      throw new Ec2ApiError('InvalidZone.NotFound', `The zone '${az}' does not exist.`);
    }
    const volumeType = p.VolumeType ?? 'gp3';
    const rule = VOLUME_TYPES[volumeType];
    if (!rule) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `Value (${volumeType}) for parameter volumeType is invalid. Valid values: ${Object.keys(VOLUME_TYPES).join(', ')}`,
      );
    }
    let snapshot: SnapshotRec | undefined;
    if (p.SnapshotId !== undefined) {
      snapshot = this.snapshots.get(p.SnapshotId);
      if (!snapshot) {
        throw new Ec2ApiError('InvalidSnapshot.NotFound', `The snapshot '${p.SnapshotId}' does not exist.`);
      }
      const state = snapState(snapshot, now);
      if (state !== 'completed') {
        throw new Ec2ApiError('IncorrectState', `Snapshot is in invalid state - ${state}`);
      }
    }
    const size = integer(p, 'Size') ?? snapshot?.sizeGiB;
    if (size === undefined) {
      throw new Ec2ApiError('MissingParameter', 'The request must contain the parameter size or snapshotId');
    }
    if (snapshot && size < snapshot.sizeGiB) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `Volume of ${size}GiB is too small; minimum is ${snapshot.sizeGiB}GiB.`,
      );
    }
    if (size < rule.min || size > rule.max) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `Volume of ${size}GiB is too ${size < rule.min ? 'small' : 'large'} for ${volumeType}; ` +
          `minimum is ${rule.min}GiB, maximum is ${rule.max}GiB.`,
      );
    }
    let iops = integer(p, 'Iops');
    if (iops !== undefined && rule.iops === 'none') {
      throw new Ec2ApiError(
        'InvalidParameterCombination',
        `The parameter iops is not supported for ${volumeType} volumes.`,
      );
    }
    if (iops === undefined && rule.iops === 'required') {
      throw new Ec2ApiError(
        'MissingParameter',
        `The parameter iops must be specified for ${volumeType} volumes.`,
      );
    }
    if (iops !== undefined && rule.iopsRange && (iops < rule.iopsRange[0] || iops > rule.iopsRange[1])) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `Iops of ${iops} is out of range for ${volumeType}: ${rule.iopsRange[0]}-${rule.iopsRange[1]}.`,
      );
    }
    let throughput = integer(p, 'Throughput');
    if (throughput !== undefined && !rule.throughput) {
      throw new Ec2ApiError(
        'InvalidParameterCombination',
        `The parameter throughput is not supported for ${volumeType} volumes.`,
      );
    }
    if (throughput !== undefined && (throughput < 125 || throughput > 2000)) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `Throughput of ${throughput} is out of range: 125-2000.`,
      );
    }
    if (volumeType === 'gp3') {
      iops ??= 3000;
      throughput ??= 125;
    } else if (volumeType === 'gp2') {
      iops = Math.min(16000, Math.max(100, size * 3));
    }
    const encrypted = bool(p, 'Encrypted') ?? false;
    if (p.KmsKeyId !== undefined && !encrypted) {
      throw new Ec2ApiError(
        'InvalidParameterDependency',
        'The parameter KmsKeyId requires the parameter Encrypted to be set.',
      );
    }
    const tags = tagSpecifications(p, 'volume');

    const volumeId = hexId('vol');
    const v: VolumeRec = {
      volumeId,
      sizeGiB: size,
      volumeType,
      ...(iops === undefined ? {} : { iops }),
      ...(throughput === undefined ? {} : { throughput }),
      encrypted,
      ...(p.KmsKeyId === undefined ? {} : { kmsKeyId: p.KmsKeyId }),
      ...(snapshot === undefined ? {} : { snapshotId: snapshot.snapshotId }),
      availabilityZone: az,
      createTime: new Date(now),
      availableAt: now + this.delay('create'),
      visibleAt: now + this.consistencyDelayMs,
      tags,
      ...(token === undefined ? {} : { clientToken: token }),
      paramsKey,
      stickAttaching: false,
      ...(this.createFailures > 0 ? { failed: true } : {}),
      attachments: [],
      modifications: [],
    };
    if (this.createFailures > 0) this.createFailures--;
    if (this.blockDevices && this.blockDevices.node === undefined)
      v.imagePath = await this.makeImage(volumeId, size, snapshot);
    this.vols.set(volumeId, v);
    if (token !== undefined) this.tokens.set(token, v);
    return this.volumeXml(v, now);
  }

  private describeVolumes(p: Params, now: number): XmlChild[] {
    const ids = scalarList(p, 'VolumeId');
    for (const id of ids) {
      if (!VOLUME_ID.test(id)) throw new Ec2ApiError('InvalidVolumeID.Malformed', `Invalid id: "${id}"`);
    }
    const missing = ids.filter((id) => {
      const v = this.vols.get(id);
      return !v || volState(v, now) === 'deleted' || now < v.visibleAt;
    });
    if (missing.length > 0) {
      throw new Ec2ApiError(
        'InvalidVolume.NotFound',
        missing.length === 1
          ? `The volume '${missing[0]}' does not exist.`
          : `The volumes '${missing.join(', ')}' do not exist.`,
      );
    }
    const fs = filters(p);
    const selected = [...this.vols.values()].filter((v) => {
      if (volState(v, now) === 'deleted' || now < v.visibleAt) return false;
      if (ids.length > 0 && !ids.includes(v.volumeId)) return false;
      const live = v.attachments.filter((a) => attState(a, now) !== 'detached');
      return passes(fs, (name) => {
        switch (name) {
          case 'volume-id':
            return [v.volumeId];
          case 'status':
            return [volState(v, now)];
          case 'availability-zone':
            return [v.availabilityZone];
          case 'size':
            return [String(v.sizeGiB)];
          case 'volume-type':
            return [v.volumeType];
          case 'snapshot-id':
            return [v.snapshotId ?? ''];
          case 'encrypted':
            return [String(v.encrypted)];
          case 'attachment.instance-id':
            return live.map((a) => a.instanceId);
          case 'attachment.device':
            return live.map((a) => a.device);
          case 'attachment.status':
            return live.map((a) => attState(a, now));
          case 'attachment.delete-on-termination':
            return live.map(() => 'false');
          default:
            return tagCandidates(name, v.tags);
        }
      });
    });
    const { page, next } = paginate(selected, p, ids.length > 0);
    return [
      items(
        'volumeSet',
        page.map((v) => this.volumeXml(v, now)),
      ),
      leaf('nextToken', next),
    ];
  }

  private async deleteVolume(p: Params, now: number): Promise<XmlChild[]> {
    const v = this.findVolume(required(p, 'VolumeId'), now);
    const state = volState(v, now);
    if (state === 'in-use') {
      const a = v.attachments.find((x) => attState(x, now) !== 'detached');
      throw new Ec2ApiError(
        'VolumeInUse',
        `Volume ${v.volumeId} is currently attached to ${a?.instanceId ?? '?'}`,
      );
    }
    if (state === 'deleting') {
      throw new Ec2ApiError('IncorrectState', `The volume '${v.volumeId}' is in the 'deleting' state.`);
    }
    v.deleteRequestedAt = now;
    v.deletedAt = now + this.delay('delete');
    if (v.imagePath !== undefined) {
      await rm(v.imagePath, { force: true });
      v.imagePath = undefined;
    }
    return [leaf('return', true)];
  }

  private attachVolume(p: Params, now: number): XmlChild[] {
    const volumeId = required(p, 'VolumeId');
    const instanceId = required(p, 'InstanceId');
    const device = required(p, 'Device');
    const v = this.findVolume(volumeId, now);
    const instance = this.findInstance(instanceId);
    if (!DEVICE_NAME.test(device)) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `Value (${device}) for parameter device is invalid. ${device} is not a valid EBS device name.`,
      );
    }
    const state = volState(v, now);
    if (state === 'in-use') {
      throw new Ec2ApiError('VolumeInUse', `${volumeId} is already attached to an instance`);
    }
    if (state !== 'available') {
      throw new Ec2ApiError('IncorrectState', `vol ${volumeId} is in the '${state}' state, not 'available'.`);
    }
    if (v.availabilityZone !== instance.availabilityZone) {
      throw new Ec2ApiError(
        'InvalidVolume.ZoneMismatch',
        `The volume '${volumeId}' is not in the same availability zone as instance '${instanceId}'`,
      );
    }
    if (this.devicesInUse(instance, now).includes(device)) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `Invalid value '${device}' for unixDevice. Attachment point ${device} is already in use`,
      );
    }
    const a: AttachmentRec = {
      volumeId,
      instanceId,
      device,
      attachTime: new Date(now),
      requestedAt: now,
      attachedAt: v.stickAttaching ? Number.POSITIVE_INFINITY : now + this.delay('attach'),
      foreign: false,
    };
    v.attachments.push(a);
    this.history.push(a);
    this.scheduleWake(now);
    return this.attachmentXml(a, now);
  }

  private async detachVolume(p: Params, now: number): Promise<XmlChild[]> {
    const v = this.findVolume(required(p, 'VolumeId'), now);
    const live = v.attachments.filter((x) => {
      const s = attState(x, now);
      return s === 'attaching' || s === 'attached' || s === 'busy';
    });
    const a = live[0];
    if (!a) {
      throw new Ec2ApiError(
        'IncorrectState',
        `Volume '${v.volumeId}' is in the '${volState(v, now)}' state.`,
      );
    }
    if (
      (p.InstanceId !== undefined && p.InstanceId !== a.instanceId) ||
      (p.Device !== undefined && p.Device !== a.device)
    ) {
      throw new Ec2ApiError(
        'InvalidAttachment.NotFound',
        `The volume '${v.volumeId}' is not attached to instance '${p.InstanceId ?? '?'}' as device '${p.Device ?? '?'}'`,
      );
    }
    if (a.attachedAt > now) a.attachedAt = Number.POSITIVE_INFINITY; // never reached attached
    a.detachRequestedAt ??= now;
    if (!bool(p, 'Force') && (await this.inUse(a))) {
      a.busy = true; // the instance still uses it: EC2 waits for the OS to let go
    } else {
      a.busy = false;
      a.detachedAt = now + this.delay('detach');
    }
    this.scheduleWake(now);
    return this.attachmentXml(a, now);
  }

  /** Size only (the driver changes nothing else); EC2's rules: grow only, one modification at a time. */
  private modifyVolume(p: Params, now: number): XmlChild[] {
    const v = this.findVolume(required(p, 'VolumeId'), now);
    const unsupported = ['VolumeType', 'Iops', 'Throughput', 'MultiAttachEnabled'].filter(
      (k) => p[k] !== undefined,
    );
    if (unsupported.length > 0) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `fake EC2: ModifyVolume of ${unsupported.join(', ')} is not implemented (Size only)`,
      );
    }
    const size = integer(p, 'Size');
    if (size === undefined) {
      throw new Ec2ApiError('MissingParameter', 'The request must contain the parameter size');
    }
    const state = volState(v, now);
    if (state !== 'available' && state !== 'in-use') {
      throw new Ec2ApiError('IncorrectState', `The volume '${v.volumeId}' is in the '${state}' state.`);
    }
    const last = v.modifications.at(-1);
    if (last && modState(last, now) !== 'completed' && modState(last, now) !== 'failed') {
      throw new Ec2ApiError(
        'IncorrectModificationState',
        `Volume '${v.volumeId}' is already being modified (${modState(last, now)}).`,
      );
    }
    if (size < v.sizeGiB) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `New size cannot be smaller than existing size: ${size} GiB < ${v.sizeGiB} GiB.`,
      );
    }
    if (size === v.sizeGiB) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `New size ${size} GiB is the volume's current size; nothing to modify.`,
      );
    }
    const rule = VOLUME_TYPES[v.volumeType];
    if (rule && size > rule.max) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        `Volume of ${size}GiB is too large for ${v.volumeType}; maximum is ${rule.max}GiB.`,
      );
    }
    const optimizingAt = now + this.delay('modify');
    const m: ModificationRec = {
      originalSizeGiB: v.sizeGiB,
      targetSizeGiB: size,
      startTime: new Date(now),
      optimizingAt,
      completedAt: optimizingAt + this.delay('optimize'),
      grown: !this.blockDevices || v.imagePath === undefined || this.modificationFailure !== undefined,
      ...(this.modificationFailure === undefined ? {} : { failure: this.modificationFailure }),
    };
    this.modificationFailure = undefined;
    v.modifications.push(m);
    v.sizeGiB = size;
    this.scheduleWake(now);
    return [el('volumeModification', ...this.modificationXml(v, m, now))];
  }

  private describeVolumesModifications(p: Params, now: number): XmlChild[] {
    const ids = scalarList(p, 'VolumeId');
    for (const id of ids) this.findVolume(id, now);
    const never = ids.filter((id) => this.vols.get(id)?.modifications.length === 0);
    if (never.length > 0) {
      throw new Ec2ApiError(
        'InvalidVolumeModification.NotFound',
        `Modification for volume '${never[0]}' does not exist.`,
      );
    }
    const fs = filters(p);
    const selected = [...this.vols.values()].flatMap((v) => {
      const m = v.modifications.at(-1);
      if (!m || volState(v, now) === 'deleted') return [];
      if (ids.length > 0 && !ids.includes(v.volumeId)) return [];
      const ok = passes(fs, (name) => {
        switch (name) {
          case 'volume-id':
            return [v.volumeId];
          case 'modification-state':
            return [modState(m, now)];
          case 'target-size':
            return [String(m.targetSizeGiB)];
          case 'original-size':
            return [String(m.originalSizeGiB)];
          default:
            return undefined;
        }
      });
      return ok ? [{ v, m }] : [];
    });
    const { page, next } = paginate(selected, p, ids.length > 0);
    return [
      items(
        'volumeModificationSet',
        page.map(({ v, m }) => this.modificationXml(v, m, now)),
      ),
      leaf('nextToken', next),
    ];
  }

  private describeInstances(p: Params, now: number): XmlChild[] {
    const ids = scalarList(p, 'InstanceId');
    const missing = ids.filter((id) => !this.instances.has(id));
    if (missing.length > 0) {
      throw new Ec2ApiError(
        'InvalidInstanceID.NotFound',
        `The instance ID${missing.length > 1 ? 's' : ''} '${missing.join(', ')}' do${missing.length > 1 ? '' : 'es'} not exist`,
      );
    }
    const fs = filters(p);
    const selected = [...this.instances.values()].filter((i) => {
      if (ids.length > 0 && !ids.includes(i.instanceId)) return false;
      const mappings = this.mappings(i, now);
      return passes(fs, (name) => {
        switch (name) {
          case 'instance-id':
            return [i.instanceId];
          case 'private-dns-name':
            return [i.privateDnsName];
          case 'availability-zone':
            return [i.availabilityZone];
          case 'instance-state-name':
            return ['running'];
          case 'block-device-mapping.device-name':
            return mappings.map((m) => m.device);
          case 'block-device-mapping.volume-id':
            return mappings.map((m) => m.volumeId);
          case 'block-device-mapping.status':
            return mappings.map((m) => m.status);
          default:
            return undefined;
        }
      });
    });
    const { page, next } = paginate(selected, p, ids.length > 0);
    return [
      items(
        'reservationSet',
        page.map((i) => [
          leaf('reservationId', `r-${createHash('sha1').update(i.instanceId).digest('hex').slice(0, 17)}`),
          leaf('ownerId', this.ownerId),
          el('groupSet'),
          items('instancesSet', [
            [
              leaf('instanceId', i.instanceId),
              leaf('imageId', 'ami-0123456789abcdef0'),
              el('instanceState', leaf('code', 16), leaf('name', 'running')),
              leaf('privateDnsName', i.privateDnsName),
              leaf('instanceType', 'm5.large'),
              leaf('launchTime', i.launchTime),
              el('placement', leaf('availabilityZone', i.availabilityZone), leaf('tenancy', 'default')),
              leaf('rootDeviceType', 'ebs'),
              leaf('rootDeviceName', i.usedDevices[0]),
              items(
                'blockDeviceMapping',
                this.mappings(i, now).map((m) => [
                  leaf('deviceName', m.device),
                  el(
                    'ebs',
                    leaf('volumeId', m.volumeId),
                    leaf('status', m.status),
                    leaf('attachTime', m.attachTime),
                    leaf('deleteOnTermination', m.deleteOnTermination),
                  ),
                ]),
              ),
            ],
          ]),
        ]),
      ),
      leaf('nextToken', next),
    ];
  }

  private async createSnapshot(p: Params, now: number): Promise<XmlChild[]> {
    const v = this.findVolume(required(p, 'VolumeId'), now);
    const state = volState(v, now);
    if (state !== 'available' && state !== 'in-use') {
      throw new Ec2ApiError('IncorrectState', `The volume '${v.volumeId}' is in the '${state}' state.`);
    }
    const description = p.Description ?? '';
    if (description.length > 255) {
      throw new Ec2ApiError(
        'InvalidParameterValue',
        'Value for parameter description is too long (255 at most).',
      );
    }
    const tags = tagSpecifications(p, 'snapshot');
    const snapshotId = hexId('snap');
    const s: SnapshotRec = {
      snapshotId,
      volumeId: v.volumeId,
      sizeGiB: v.sizeGiB,
      tags,
      ownImage: true,
      description,
      startTime: new Date(now),
      completedAt: now + this.delay('snapshot'),
      failed: false,
    };
    // The volume's bytes now: what a volume made from this snapshot will hold.
    if (v.imagePath !== undefined) s.image = await this.copyImage(v.imagePath, `${snapshotId}.img`);
    this.snapshots.set(snapshotId, s);
    return this.snapshotXml(s, now);
  }

  private async deleteSnapshot(p: Params): Promise<XmlChild[]> {
    const id = required(p, 'SnapshotId');
    if (!SNAPSHOT_ID.test(id)) {
      throw new Ec2ApiError('InvalidSnapshotID.Malformed', `Invalid id: "${id}" (expecting "snap-...")`);
    }
    const s = this.snapshots.get(id);
    if (!s) throw new Ec2ApiError('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`);
    this.snapshots.delete(id);
    if (s.ownImage && s.image !== undefined) await rm(s.image, { force: true });
    return [leaf('return', true)];
  }

  private describeSnapshots(p: Params, now: number): XmlChild[] {
    const ids = scalarList(p, 'SnapshotId');
    for (const id of ids) {
      if (!SNAPSHOT_ID.test(id)) {
        throw new Ec2ApiError('InvalidSnapshotID.Malformed', `Invalid id: "${id}" (expecting "snap-...")`);
      }
    }
    const missing = ids.filter((id) => !this.snapshots.has(id));
    if (missing.length > 0) {
      throw new Ec2ApiError(
        'InvalidSnapshot.NotFound',
        `The snapshot '${missing.join(', ')}' does not exist.`,
      );
    }
    // Every snapshot here is this account's: `self` or our id shows them, other owners none.
    const owners = scalarList(p, 'Owner');
    if (owners.length > 0 && !owners.some((o) => o === 'self' || o === this.ownerId))
      return [items('snapshotSet', [])];
    const fs = filters(p);
    const selected = [...this.snapshots.values()].filter((s) => {
      if (ids.length > 0 && !ids.includes(s.snapshotId)) return false;
      return passes(fs, (name) => {
        switch (name) {
          case 'snapshot-id':
            return [s.snapshotId];
          case 'volume-id':
            return [s.volumeId];
          case 'status':
            return [snapState(s, now)];
          case 'progress':
            return [snapProgress(s, now)];
          case 'volume-size':
            return [String(s.sizeGiB)];
          case 'owner-id':
            return [this.ownerId];
          case 'description':
            return [s.description];
          default:
            return tagCandidates(name, s.tags);
        }
      });
    });
    const { page, next } = paginate(selected, p, ids.length > 0);
    return [
      items(
        'snapshotSet',
        page.map((s) => this.snapshotXml(s, now)),
      ),
      leaf('nextToken', next),
    ];
  }

  private snapshotXml(s: SnapshotRec, now: number): XmlChild[] {
    return [
      leaf('snapshotId', s.snapshotId),
      leaf('volumeId', s.volumeId),
      leaf('status', snapState(s, now)),
      leaf('startTime', s.startTime),
      leaf('progress', snapProgress(s, now)),
      leaf('ownerId', this.ownerId),
      leaf('volumeSize', s.sizeGiB),
      leaf('description', s.description),
      leaf('encrypted', false),
      tagsXml(s.tags),
    ];
  }

  private describeAvailabilityZones(p: Params): XmlChild[] {
    const names = scalarList(p, 'ZoneName');
    const fs = filters(p);
    const zones = this.availabilityZones.filter((z) => {
      if (names.length > 0 && !names.includes(z)) return false;
      return passes(fs, (name) => {
        switch (name) {
          case 'zone-name':
            return [z];
          case 'zone-id':
            return [this.zoneId(z)];
          case 'region-name':
            return [this.region];
          case 'state':
            return ['available'];
          default:
            return undefined;
        }
      });
    });
    return [
      items(
        'availabilityZoneInfo',
        zones.map((z) => [
          leaf('zoneName', z),
          leaf('zoneState', 'available'),
          leaf('regionName', this.region),
          leaf('zoneId', this.zoneId(z)),
          leaf('zoneType', 'availability-zone'),
          leaf('optInStatus', 'opt-in-not-required'),
          el('messageSet'),
        ]),
      ),
    ];
  }

  // --- state helpers ---------------------------------------------------------------------------

  private delay(t: FakeEc2Transition): number {
    return this.delays[t] ?? this.stateDelayMs;
  }

  /** AWS-style zone ids: us-east-1a → use1-az1, ap-southeast-2b → apse2-az2. */
  private zoneId(zone: string): string {
    const i = this.availabilityZones.indexOf(zone);
    const [area = '', direction = '', n = ''] = this.region.split('-');
    const dir = direction
      .replace(/north/g, 'n')
      .replace(/south/g, 's')
      .replace(/east/g, 'e')
      .replace(/west/g, 'w');
    return `${area}${dir.replace('central', 'c')}${n}-az${i + 1}`;
  }

  private zoneForId(zoneId: string | undefined): string | undefined {
    if (zoneId === undefined) return undefined;
    return this.availabilityZones.find((z) => this.zoneId(z) === zoneId) ?? `(zone id ${zoneId})`;
  }

  private mustVolume(volumeId: string): VolumeRec {
    const v = this.vols.get(volumeId);
    if (!v) throw new Error(`no volume ${volumeId}`);
    return v;
  }

  private findVolume(volumeId: string, now: number): VolumeRec {
    if (!VOLUME_ID.test(volumeId)) {
      throw new Ec2ApiError('InvalidVolumeID.Malformed', `Invalid id: "${volumeId}" (expecting "vol-...")`);
    }
    const v = this.vols.get(volumeId);
    if (!v || volState(v, now) === 'deleted') {
      throw new Ec2ApiError('InvalidVolume.NotFound', `The volume '${volumeId}' does not exist.`);
    }
    return v;
  }

  private findInstance(instanceId: string): InstanceRec {
    const i = this.instances.get(instanceId);
    if (!i)
      throw new Ec2ApiError('InvalidInstanceID.NotFound', `The instance ID '${instanceId}' does not exist`);
    return i;
  }

  private devicesInUse(instance: InstanceRec, now: number): string[] {
    return this.mappings(instance, now).map((m) => m.device);
  }

  /** The instance's block device mapping: its own disks, then EBS attachments not yet detached. */
  private mappings(
    instance: InstanceRec,
    now: number,
  ): { device: string; volumeId: string; status: string; attachTime: Date; deleteOnTermination: boolean }[] {
    const own = instance.usedDevices.map((device) => ({
      device,
      volumeId: `vol-0${createHash('sha1').update(`${instance.instanceId}${device}`).digest('hex').slice(0, 16)}`,
      status: 'attached',
      attachTime: instance.launchTime,
      deleteOnTermination: true,
    }));
    const ebs = [...this.vols.values()].flatMap((v) =>
      v.attachments
        .filter((a) => a.instanceId === instance.instanceId && attState(a, now) !== 'detached')
        .map((a) => ({
          device: a.device,
          volumeId: a.volumeId,
          status: attState(a, now),
          attachTime: a.attachTime,
          deleteOnTermination: false,
        })),
    );
    return [...own, ...ebs];
  }

  private view(v: VolumeRec, now: number): FakeVolume {
    const m = v.modifications.at(-1);
    return {
      volumeId: v.volumeId,
      state: volState(v, now),
      sizeGiB: v.sizeGiB,
      volumeType: v.volumeType,
      ...(v.iops === undefined ? {} : { iops: v.iops }),
      ...(v.throughput === undefined ? {} : { throughput: v.throughput }),
      encrypted: v.encrypted,
      ...(v.kmsKeyId === undefined ? {} : { kmsKeyId: v.kmsKeyId }),
      ...(v.snapshotId === undefined ? {} : { snapshotId: v.snapshotId }),
      availabilityZone: v.availabilityZone,
      createTime: v.createTime,
      tags: tagRecord(v.tags),
      ...(v.clientToken === undefined ? {} : { clientToken: v.clientToken }),
      ...(v.imagePath === undefined ? {} : { imagePath: v.imagePath }),
      attachments: v.attachments
        .filter((a) => attState(a, now) !== 'detached')
        .map((a) => ({
          volumeId: a.volumeId,
          instanceId: a.instanceId,
          device: a.device,
          state: attState(a, now),
          attachTime: a.attachTime,
          foreign: a.foreign,
          ...(a.loopDevice === undefined ? {} : { loopDevice: a.loopDevice }),
          ...(a.links?.[0] === undefined ? {} : { link: a.links[0] }),
        })),
      ...(m === undefined
        ? {}
        : {
            modification: {
              state: modState(m, now),
              originalSizeGiB: m.originalSizeGiB,
              targetSizeGiB: m.targetSizeGiB,
              startTime: m.startTime,
            },
          }),
    };
  }

  private volumeXml(v: VolumeRec, now: number): XmlChild[] {
    return [
      leaf('volumeId', v.volumeId),
      leaf('size', v.sizeGiB),
      leaf('snapshotId', v.snapshotId ?? ''),
      leaf('availabilityZone', v.availabilityZone),
      leaf('status', volState(v, now)),
      leaf('createTime', v.createTime),
      items(
        'attachmentSet',
        v.attachments.filter((a) => attState(a, now) !== 'detached').map((a) => this.attachmentXml(a, now)),
      ),
      tagsXml(v.tags),
      leaf('volumeType', v.volumeType),
      leaf('iops', v.iops),
      leaf('throughput', v.throughput),
      leaf('encrypted', v.encrypted),
      leaf('kmsKeyId', v.kmsKeyId),
      leaf('multiAttachEnabled', false),
    ];
  }

  private modificationXml(v: VolumeRec, m: ModificationRec, now: number): XmlChild[] {
    const state = modState(m, now);
    const span = m.completedAt - m.startTime.getTime();
    const progress =
      state === 'completed' ? 100 : span > 0 ? Math.floor(((now - m.startTime.getTime()) / span) * 100) : 0;
    return [
      leaf('volumeId', v.volumeId),
      leaf('modificationState', state),
      leaf('statusMessage', state === 'failed' ? m.failure : undefined),
      leaf('targetSize', m.targetSizeGiB),
      leaf('targetIops', v.iops),
      leaf('targetVolumeType', v.volumeType),
      leaf('targetThroughput', v.throughput),
      leaf('targetMultiAttachEnabled', false),
      leaf('originalSize', m.originalSizeGiB),
      leaf('originalIops', v.iops),
      leaf('originalVolumeType', v.volumeType),
      leaf('originalThroughput', v.throughput),
      leaf('originalMultiAttachEnabled', false),
      leaf('progress', Math.min(100, Math.max(0, progress))),
      leaf('startTime', m.startTime),
      leaf('endTime', state === 'completed' ? new Date(m.completedAt) : undefined),
    ];
  }

  private attachmentXml(a: AttachmentRec, now: number): XmlChild[] {
    return [
      leaf('volumeId', a.volumeId),
      leaf('instanceId', a.instanceId),
      leaf('device', a.device),
      leaf('status', attState(a, now)),
      leaf('attachTime', a.attachTime),
      leaf('deleteOnTermination', false),
    ];
  }

  // --- time and block devices ------------------------------------------------------------------

  /** Runs fn after everything queued before it (requests and reconciles never interleave). */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** One timer, for the earliest pending transition, so devices appear even if nobody asks. */
  private scheduleWake(now: number): void {
    if (this.stopped) return;
    let next = Number.POSITIVE_INFINITY;
    for (const a of this.history) {
      const appearsAt = a.attachedAt + this.deviceDelayMs;
      if (a.attachedAt > now && a.attachedAt < next) next = a.attachedAt;
      if (a.loopDevice === undefined && a.links === undefined && appearsAt > now && appearsAt < next)
        next = appearsAt;
      if (a.detachedAt !== undefined && a.detachedAt > now && a.detachedAt < next) next = a.detachedAt;
      if (a.busy) next = Math.min(next, now + 100); // looks again whether the device was let go
    }
    for (const v of this.vols.values()) {
      const m = v.modifications.at(-1);
      if (m && !m.grown && m.optimizingAt > now && m.optimizingAt < next) next = m.optimizingAt;
    }
    if (next === Number.POSITIVE_INFINITY || next >= this.wakeAt) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = next;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeAt = Number.POSITIVE_INFINITY;
        this.flush().catch((err: unknown) => this.errors.push(err as Error));
      },
      next - now + 1,
    );
    this.wakeTimer.unref();
  }

  private async reconcile(now: number): Promise<void> {
    for (const a of this.history) {
      if (a.busy && a.detachedAt === undefined && !(await this.inUse(a))) {
        a.busy = false; // let go: the detach goes on
        a.detachedAt = now + this.delay('detach');
      }
    }
    if (this.blockDevices) {
      for (const a of this.history) {
        const wanted =
          !this.stopped &&
          !a.foreign &&
          a.attachedAt + this.deviceDelayMs <= now &&
          !(a.detachedAt !== undefined && a.detachedAt <= now) &&
          this.instances.get(a.instanceId)?.blockDevices === true;
        const made = a.loopDevice !== undefined || a.links !== undefined;
        if (wanted && !made && !a.materializeFailed) await this.materialize(a);
        if (!wanted && made) await this.dematerialize(a);
      }
      for (const v of this.vols.values()) {
        const m = v.modifications.at(-1);
        if (m && !m.grown && now >= m.optimizingAt && !this.stopped) await this.grow(v, m);
      }
    }
    this.scheduleWake(now);
  }

  /** Whether the instance uses the attached device: a test holds it, or its loop device is mounted. */
  private async inUse(a: AttachmentRec): Promise<boolean> {
    if (a.held) return true;
    if (a.loopDevice === undefined) return false;
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
    return mountinfo.split('\n').some((line) => line.split(' - ')[1]?.split(' ')[1] === a.loopDevice);
  }

  /**
   * The names the attached disk gets in the instance, the device's own first: the requested name;
   * on Xen its sdX -> xvdX rename; on Nitro the next free /dev/nvmeNn1 and its by-id link.
   */
  private linkPaths(a: AttachmentRec): string[] {
    const bd = this.blockDevices as FakeEc2BlockDevices;
    const instance = this.instances.get(a.instanceId);
    const devDir = instance?.devDir ?? bd.devDir;
    const naming = instance?.naming ?? (bd.nvme ? 'nvme' : 'requested');
    if (naming === 'nvme') {
      const taken = new Set(
        this.history
          .flatMap((x) => (x.instanceId === a.instanceId ? (x.links ?? []) : []))
          .map((l) => basename(l)),
      );
      let n = 1; // nvme0n1 is the root disk
      while (taken.has(`nvme${n}n1`)) n++;
      return [
        join(devDir, `nvme${n}n1`),
        join(
          instance?.byIdDir ?? bd.byIdDir,
          `nvme-Amazon_Elastic_Block_Store_${a.volumeId.replace('-', '')}`,
        ),
      ];
    }
    const name = basename(a.device);
    return [join(devDir, naming === 'xen' ? name.replace(/^sd/, 'xvd') : name)];
  }

  private async materialize(a: AttachmentRec): Promise<void> {
    const bd = this.blockDevices as FakeEc2BlockDevices;
    try {
      let target = bd.node;
      if (target === undefined) {
        const image = this.vols.get(a.volumeId)?.imagePath;
        if (image === undefined) throw new Error(`${a.volumeId} has no image file`);
        const { stdout } = await execa('losetup', ['--find', '--show', '--', image], {
          timeout: COMMAND_TIMEOUT_MS,
        });
        a.loopDevice = stdout.trim();
        target = a.loopDevice;
      }
      const links = this.linkPaths(a);
      a.links = [];
      for (const link of links) {
        await mkdir(dirname(link), { recursive: true });
        await rm(link, { force: true });
        await symlink(target, link);
        a.links.push(link);
        target = link; // the by-id link points at the device's own name, as udev's does
      }
    } catch (err) {
      a.materializeFailed = true;
      this.errors.push(
        new Error(`fake EC2: attaching ${a.volumeId} as a block device: ${(err as Error).message}`),
      );
    }
  }

  private async dematerialize(a: AttachmentRec): Promise<void> {
    try {
      for (const link of [...(a.links ?? [])].reverse()) {
        // Only links that still point where this attachment put them (a test may have reused the name).
        const target = await readlink(link).catch(() => undefined);
        const ours =
          target !== undefined &&
          (target === a.loopDevice || target === this.blockDevices?.node || a.links?.includes(target));
        if (ours) await rm(link, { force: true });
      }
      a.links = undefined;
      if (a.loopDevice !== undefined) {
        await execa('losetup', ['-d', a.loopDevice], { timeout: COMMAND_TIMEOUT_MS });
        a.loopDevice = undefined;
      }
    } catch (err) {
      this.errors.push(new Error(`fake EC2: detaching ${a.volumeId}: ${(err as Error).message}`));
    }
  }

  /** The new size becomes real: a longer image file, and each loop device over it told so. */
  private async grow(v: VolumeRec, m: ModificationRec): Promise<void> {
    m.grown = true; // tried once: a failure is reported in errors, not retried at every request
    try {
      if (v.imagePath === undefined) return;
      await truncate(v.imagePath, m.targetSizeGiB * GiB);
      for (const a of v.attachments) {
        if (a.loopDevice !== undefined) {
          await execa('losetup', ['-c', a.loopDevice], { timeout: COMMAND_TIMEOUT_MS });
        }
      }
    } catch (err) {
      this.errors.push(new Error(`fake EC2: growing ${v.volumeId}: ${(err as Error).message}`));
    }
  }

  /** A sparse copy of an image file under the fake's image directory. */
  private async copyImage(from: string, name: string): Promise<string> {
    const bd = this.blockDevices as FakeEc2BlockDevices;
    const path = join(bd.imageDir, name);
    await execa('cp', ['--sparse=always', '--', from, path], { timeout: COMMAND_TIMEOUT_MS });
    return path;
  }

  private async makeImage(
    volumeId: string,
    sizeGiB: number,
    snapshot: SnapshotRec | undefined,
  ): Promise<string> {
    const bd = this.blockDevices as FakeEc2BlockDevices;
    await mkdir(bd.imageDir, { recursive: true });
    const path = join(bd.imageDir, `${volumeId}.img`);
    if (snapshot?.image !== undefined) {
      await execa('cp', ['--sparse=always', '--', snapshot.image, path], { timeout: COMMAND_TIMEOUT_MS });
    } else {
      await (await open(path, 'wx')).close();
    }
    await truncate(path, sizeGiB * GiB);
    return path;
  }

  // --- network look-ups: DescribeSubnets, DescribeSecurityGroups ----------------------------------

  /** Subnets and security groups; give the fake EFS endpoint the same one so both agree. */
  network = new FakeNetwork();

  private describeSubnets(p: Params): XmlChild[] {
    const ids = scalarList(p, 'SubnetId');
    const missing = ids.filter((id) => !this.network.subnet(id));
    if (missing.length > 0) {
      throw new Ec2ApiError(
        'InvalidSubnetID.NotFound',
        `The subnet ID '${missing.join(', ')}' does not exist`,
      );
    }
    const fs = filters(p);
    const selected = this.network.subnets.filter((s) => {
      if (ids.length > 0 && !ids.includes(s.subnetId)) return false;
      return passes(fs, (name) => {
        switch (name) {
          case 'subnet-id':
            return [s.subnetId];
          case 'vpc-id':
            return [s.vpcId];
          case 'availability-zone':
            return [s.availabilityZone];
          case 'availability-zone-id':
            return [s.availabilityZoneId];
          default:
            return undefined;
        }
      });
    });
    return [
      items(
        'subnetSet',
        selected.map((s) => [
          leaf('subnetId', s.subnetId),
          leaf('subnetArn', `arn:aws:ec2:${this.region}:${this.ownerId}:subnet/${s.subnetId}`),
          leaf('state', 'available'),
          leaf('vpcId', s.vpcId),
          leaf('ownerId', this.ownerId),
          leaf('cidrBlock', s.cidrBlock),
          leaf('availableIpAddressCount', 251),
          leaf('availabilityZone', s.availabilityZone),
          leaf('availabilityZoneId', s.availabilityZoneId),
          leaf('defaultForAz', false),
          leaf('mapPublicIpOnLaunch', false),
        ]),
      ),
    ];
  }

  private describeSecurityGroups(p: Params): XmlChild[] {
    const ids = scalarList(p, 'GroupId');
    const missing = ids.filter((id) => !this.network.securityGroup(id));
    if (missing.length > 0) {
      throw new Ec2ApiError(
        'InvalidGroup.NotFound',
        `The security group '${missing.join(', ')}' does not exist`,
      );
    }
    const fs = filters(p);
    const selected = this.network.securityGroups.filter((g) => {
      if (ids.length > 0 && !ids.includes(g.groupId)) return false;
      return passes(fs, (name) => {
        switch (name) {
          case 'group-id':
            return [g.groupId];
          case 'group-name':
            return [g.groupName];
          case 'vpc-id':
            return [g.vpcId];
          default:
            return undefined;
        }
      });
    });
    return [
      items(
        'securityGroupInfo',
        selected.map((g) => [
          leaf('ownerId', this.ownerId),
          leaf('groupId', g.groupId),
          leaf('groupName', g.groupName),
          leaf('groupDescription', g.groupName),
          leaf('vpcId', g.vpcId),
          el('ipPermissions'),
          el('ipPermissionsEgress'),
        ]),
      ),
    ];
  }
}
