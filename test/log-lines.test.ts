import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Logger } from '../src/base/logger.js';
import { createLogger } from '../src/log.js';
import { createLineLogger } from '../src/log-lines.js';

/**
 * The flexvolume executable's logger writes the daemon's lines without pino: the same keys in the
 * same order, the same level numbers, secrets masked, an `err` Error serialized the same way, and
 * only lines at or above the configured level.
 */

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-log-lines-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const BASE = { host: 'h1', driver: 'local', pid: 42, via: 'flexvolume' };

/** The calls the executable and the core make, on any logger. */
function logAll(log: Logger, err: Error): void {
  log.debug({ call: 'mount', args: ['/p'] }, 'flexvolume call');
  log.info({ call: 'unmount', args: ['/a', '/b'], status: 'Success' }, 'flexvolume call done');
  log.warn({ op: 'mount', volume: 'v1', options: { server: 'nas', password: 'hunter2' } }, 'masked');
  log.child({ driver: 'local', op: 'attach' }).info({ volume: 'v1' }, 'child bindings after the base');
  log.child({ volume: 'v2' }).child({ op: 'x' }).warn('only a message');
  log.error({ err }, 'an error object');
  log.info({ nested: { deep: { token: 't', n: 1 } }, list: [{ secretKey: 's' }] });
  log.info({ skipped: undefined, kept: null, n: 0, ok: false, text: 'line\nbreak "quoted"' }, 'values');
  log.trace('below every level here');
}

async function lines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8')).trimEnd().split('\n');
}

const withoutTime = (line: string) => line.replace(/"time":"[^"]+"/, '"time":"T"');

describe('createLineLogger', () => {
  it('writes exactly the lines pino writes for the daemon, apart from the time', async () => {
    const err = new Error('boom');
    const pinoFile = join(dir, 'pino.log');
    const pinoLog = createLogger({ level: 'debug', file: pinoFile, base: BASE, sync: true });
    logAll(pinoLog, err);
    pinoLog.flush();
    const ownFile = join(dir, 'sub', 'dir', 'own.log'); // its directory is made
    logAll(createLineLogger({ level: 'debug', file: ownFile, base: BASE }), err);

    const expected = await lines(pinoFile);
    const got = await lines(ownFile);
    expect(got.map(withoutTime)).toEqual(expected.map(withoutTime));
    expect(got).toHaveLength(8);
    for (const line of got) {
      expect(line).toMatch(/^\{"level":\d\d,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/);
      expect(line).not.toMatch(/hunter2|"t"|"s"/);
    }
  });

  it('writes only the levels at or above the configured one, children included', async () => {
    const file = join(dir, 'levels.log');
    const log = createLineLogger({ level: 'warn', file });
    const child = log.child({ op: 'x' });
    for (const l of [log, child]) {
      l.trace('t');
      l.debug('d');
      l.info('i');
      l.warn('w');
      l.error('e');
      l.fatal('f');
    }
    const got = (await lines(file)).map((line) => {
      const o = JSON.parse(line) as { level: number; msg: string; op?: string };
      return `${o.level}:${o.msg}:${o.op ?? ''}`;
    });
    expect(got).toEqual(['40:w:', '50:e:', '60:f:', '40:w:x', '50:e:x', '60:f:x']);
  });

  it('appends to an existing file', async () => {
    const file = join(dir, 'append.log');
    createLineLogger({ level: 'info', file }).info('first');
    createLineLogger({ level: 'info', file }).info('second');
    expect((await lines(file)).map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
      'first',
      'second',
    ]);
  });
});
