import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StowageError } from '../../src/base/errors.js';
import { DoorRequests, resultCode } from '../../src/core/door-requests.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';
import type { RequestSample } from '../../src/state/store.js';

/** DoorRequests: what the flexvolume executable and the CLI record per request, and that it never fails them. */
let dir: string;
let logged: { level: number; msg: string; err?: string }[];
const log = () => pino({ level: 'debug' }, { write: (line: string) => logged.push(JSON.parse(line)) });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-door-requests-'));
  logged = [];
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const request = { door: 'flexvolume', driver: 'local', operation: 'mount' } as const;

describe('DoorRequests.record', () => {
  it('records the request under this host with its code and latency bucket, in one write', async () => {
    const writes: RequestSample[] = [];
    class Counting extends SqliteStore {
      override async recordRequest(host: string, sample: RequestSample) {
        writes.push(sample);
        return super.recordRequest(host, sample);
      }
    }
    const store = new Counting(join(dir, 'state.db'));
    const requests = new DoorRequests({ store, host: 'h1', log: log() });
    await requests.record({ ...request, code: 'OK', seconds: 0.0625 });
    await requests.record({ ...request, code: 'NOT_FOUND', seconds: 3 });
    expect(writes).toHaveLength(2);
    expect((await store.requestTallies('h1')).sort((a, b) => a.code.localeCompare(b.code))).toEqual([
      { ...request, code: 'NOT_FOUND', le: '5', count: 1, seconds: 3 },
      { ...request, code: 'OK', le: '0.1', count: 1, seconds: 0.0625 },
    ]);
    expect(await store.requestTallies('h2')).toEqual([]);
    await store.close();
  });

  it('swallows a store that fails, with a debug line, so the request it counts stands', async () => {
    class Failing extends SqliteStore {
      override async recordRequest(): Promise<void> {
        throw new StowageError('UNAVAILABLE', 'database is locked');
      }
    }
    const store = new Failing(join(dir, 'state.db'));
    const requests = new DoorRequests({ store, host: 'h1', log: log() });
    await expect(requests.record({ ...request, code: 'OK', seconds: 0.01 })).resolves.toBeUndefined();
    expect(logged).toEqual([
      expect.objectContaining({ level: 20, msg: 'request not counted', err: 'database is locked' }),
    ]);
    await store.close();
  });

  it('gives up on a store that does not answer by its deadline', async () => {
    class Hanging extends SqliteStore {
      override recordRequest(): Promise<void> {
        return new Promise(() => undefined);
      }
    }
    const store = new Hanging(join(dir, 'state.db'));
    const requests = new DoorRequests({ store, host: 'h1', log: log(), deadlineMs: 10 });
    await expect(requests.record({ ...request, code: 'OK', seconds: 0.01 })).resolves.toBeUndefined();
    expect(logged).toEqual([
      expect.objectContaining({ level: 20, msg: 'request not counted: the store did not answer in time' }),
    ]);
    await store.close();
  });
});

describe('resultCode', () => {
  it('is OK without an error, the StowageError code with one, INTERNAL for anything else', () => {
    expect(resultCode()).toBe('OK');
    expect(resultCode(new StowageError('BUSY', 'held'))).toBe('BUSY');
    expect(resultCode(new Error('boom'))).toBe('INTERNAL');
  });
});
