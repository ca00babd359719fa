import { pollUntil } from '../base/backoff.js';
import { StowageError, toStowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { VolumeRecord } from '../state/store.js';
import type { SnapshotOps, VolumeSnapshot } from './driver.js';
import type { VolumeLocks } from './locks.js';
import { validateVolumeName } from './names.js';
import type { DriverRegistry } from './registry.js';

/** What the snapshot operations borrow from the VolumeManager that owns them. */
export interface SnapshotDeps {
  registry: DriverRegistry;
  locks: VolumeLocks;
  log: Logger;
  requireReady(driverName: string | undefined, name: string): Promise<VolumeRecord>;
}

/** A snapshot name's limit: CSI's for a name, and well inside EBS's 256 characters of a tag value. */
export const MAX_SNAPSHOT_NAME_LENGTH = 128;

/**
 * How long a new snapshot is looked for by name before the lock is let go (EC2 lists a snapshot a
 * moment after CreateSnapshot answers).
 */
export const LISTED_WAIT_MS = 15_000;

/** details.reason of a page token this process did not hand out (CSI answers ABORTED). */
export const INVALID_PAGE_TOKEN = 'invalid-page-token';

export interface SnapshotPage {
  snapshots: VolumeSnapshot[];
  /** Where the next page starts; undefined on the last page. */
  nextToken?: string;
}

// The characters a tag value (and so a name) may not carry: control characters.
// biome-ignore lint/suspicious/noControlCharactersInRegex: exactly what a name may not hold
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/;

/**
 * Snapshots of volumes, for every door: taken by name, idempotently, without a store table (the
 * name and the source volume travel with the snapshot), listed in a stable order with page tokens
 * of their own. Only snapshots stowage took are listed, shown or deleted; another one is never
 * touched.
 */
export class VolumeSnapshots {
  constructor(private readonly d: SnapshotDeps) {}

  /**
   * Takes a snapshot of `volume` named `name`. The same name again for the same volume answers the
   * snapshot already taken (in whatever state it is); for another volume it is CONFLICT. Under
   * the volume's lock, so two requests for one name cannot both start a snapshot.
   */
  async create(driverName: string, volume: string, name: string): Promise<VolumeSnapshot> {
    validateVolumeName(volume);
    validateSnapshotName(name);
    const ops = this.opsOf(driverName);
    return this.d.locks.withLock(volume, 'snapshot', async () => {
      const vol = await this.d.requireReady(driverName, volume);
      // Exactly this name (a storage's look-up may match more loosely).
      const [existing] = (await ops.list({ name })).filter((s) => s.name === name);
      if (existing) {
        if (existing.volume !== volume) {
          throw new StowageError(
            'CONFLICT',
            `snapshot name ${JSON.stringify(name)} is taken by ${existing.id}, a snapshot of volume ${existing.volume ?? '?'}; choose another name`,
          );
        }
        // The same name, but the volume was removed and made again since: that snapshot holds the
        // old volume's data, and answering it as this one's would be a surprise.
        const source = ops.sourceIdOf(vol);
        if (existing.sourceId !== undefined && source !== undefined && existing.sourceId !== source) {
          throw new StowageError(
            'CONFLICT',
            `snapshot name ${JSON.stringify(name)} is taken by ${existing.id}, a snapshot of an earlier volume ${volume} (${existing.sourceId}; this one is ${source}); choose another name`,
          );
        }
        if (existing.state === 'failed') {
          throw new StowageError(
            'INTERNAL',
            `snapshot ${existing.id} (${JSON.stringify(name)}) of volume ${volume} failed in the storage and holds nothing; delete it and take the snapshot again`,
          );
        }
        return existing;
      }
      const made = await ops.create(vol, name);
      this.d.log.info(
        { op: 'snapshot', volume, driver: driverName, snapshot: made.id, name },
        'snapshot started',
      );
      await this.untilListed(ops, made, volume);
      return made;
    });
  }

  /**
   * Deletes a snapshot stowage took; one that does not exist is success (a repeated delete). One
   * stowage did not take is refused: stowage never deletes data it did not make.
   */
  async delete(driverName: string, id: string): Promise<void> {
    const ops = this.opsOf(driverName);
    const found = await ops.get(id);
    if (!found) return;
    if (found.name === undefined) {
      throw new StowageError(
        'IN_USE',
        `snapshot ${id} was not taken by stowage (it carries no stowage name): stowage never deletes it; delete it yourself if it is not needed`,
      );
    }
    await ops.delete(id);
    this.d.log.info(
      { op: 'delete-snapshot', driver: driverName, snapshot: id, volume: found.volume },
      'snapshot deleted',
    );
  }

  /** A snapshot stowage took, by id; NOT_FOUND otherwise. */
  async get(driverName: string, id: string): Promise<VolumeSnapshot> {
    const found = await this.opsOf(driverName).get(id);
    if (!found || found.name === undefined) {
      throw new StowageError('NOT_FOUND', `snapshot ${id} does not exist (or was not taken by stowage)`);
    }
    return found;
  }

  /**
   * stowage's snapshots, oldest first (ties by id), those of `volume` or the one `id` when given:
   * `max` a page (0 or undefined: all), from `startingToken` (a nextToken this gave). The token
   * names the last entry served, so deletions between pages neither repeat nor skip entries.
   */
  async list(
    driverName: string,
    filter: { volume?: string; id?: string },
    page: { max?: number; startingToken?: string } = {},
  ): Promise<SnapshotPage> {
    const ops = this.opsOf(driverName);
    const after = page.startingToken ? decodeToken(page.startingToken) : undefined;
    const max = page.max ?? 0;
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new StowageError('INVALID_ARGUMENT', `the page size ${max} is not a whole number of 0 or more`);
    }
    let all: VolumeSnapshot[];
    if (filter.id !== undefined) {
      const one = await ops.get(filter.id);
      const ours = one !== undefined && one.name !== undefined;
      all = ours && (filter.volume === undefined || one.volume === filter.volume) ? [one] : [];
    } else {
      all = await ops.list(filter.volume === undefined ? {} : { volume: filter.volume });
    }
    const sorted = all.sort(byAge);
    const rest = after ? sorted.filter((s) => byAge(s, after) > 0) : sorted;
    const served = max > 0 ? rest.slice(0, max) : rest;
    const last = served.at(-1);
    return last && served.length < rest.length
      ? { snapshots: served, nextToken: encodeToken(last) }
      : { snapshots: served };
  }

  /**
   * Holds the volume's lock until a look-up by name finds the new snapshot, so that a repeated
   * request (the CO retries when an answer is late) answers it instead of taking a second one.
   * Past the deadline, or when the look-up fails, the snapshot is answered all the same: it
   * exists, and failing the request would make the CO ask for another.
   */
  private async untilListed(ops: SnapshotOps, made: VolumeSnapshot, volume: string): Promise<void> {
    try {
      await pollUntil(
        async () =>
          (await ops.list({ name: made.name ?? '' })).some((s) => s.id === made.id) ? true : undefined,
        {
          timeoutMs: LISTED_WAIT_MS,
          initialDelayMs: 50,
          maxDelayMs: 1000,
          what: `snapshot ${made.id} to be listed`,
        },
      );
    } catch (err) {
      this.d.log.warn(
        { op: 'snapshot', volume, snapshot: made.id, err: toStowageError(err, 'snapshot look-up').message },
        'the new snapshot is not listed by name yet; a repeated request now could take a second one',
      );
    }
  }

  private opsOf(driverName: string): SnapshotOps {
    const ops = this.d.registry.get(driverName).snapshots;
    if (!ops) {
      throw new StowageError('NOT_SUPPORTED', `driver ${driverName} cannot take snapshots (ebs can)`);
    }
    return ops;
  }
}

export function validateSnapshotName(name: string): string {
  if (name === '') throw new StowageError('INVALID_ARGUMENT', 'the snapshot name is missing');
  if (name.length > MAX_SNAPSHOT_NAME_LENGTH || CONTROL.test(name)) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `snapshot name ${JSON.stringify(name.slice(0, 40))} is not valid: at most ${MAX_SNAPSHOT_NAME_LENGTH} characters, no control characters`,
    );
  }
  return name;
}

type Position = Pick<VolumeSnapshot, 'createdAt' | 'id'>;

function byAge(a: Position, b: Position): number {
  return a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function encodeToken(s: Position): string {
  return Buffer.from(`${s.createdAt.getTime()}/${s.id}`).toString('base64url');
}

function decodeToken(token: string): Position {
  const m = /^(\d{1,16})\/(.{1,200})$/s.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!m) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `the page token ${JSON.stringify(token.slice(0, 60))} was not handed out by stowage; list again from the start`,
      { details: { reason: INVALID_PAGE_TOKEN } },
    );
  }
  return { createdAt: new Date(Number(m[1])), id: m[2] ?? '' };
}
