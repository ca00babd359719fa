import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pollUntil } from '../src/base/backoff.js';
import { createLogger, redact } from '../src/log.js';

/** Secrets never reach a log line: redact() and the logger that applies it. */

describe('redact', () => {
  it('masks values under secret-looking keys and keeps the others', () => {
    expect(
      redact({
        volume: 'db',
        password: 'hunter2',
        secretKey: 'abc',
        token: 't0k3n',
        Authorization: 'Bearer xyz',
        'kubernetes.io/secret/x': 'c2VjcmV0',
        passwd: 'p',
        awsSecretAccessKey: 'k',
        credentials: { user: 'u', pass: 'p' },
        size: '1G',
        count: 3,
        ok: true,
        none: null,
      }),
    ).toEqual({
      volume: 'db',
      password: '[redacted]',
      secretKey: '[redacted]',
      token: '[redacted]',
      Authorization: '[redacted]',
      'kubernetes.io/secret/x': '[redacted]',
      passwd: '[redacted]',
      awsSecretAccessKey: '[redacted]',
      credentials: '[redacted]',
      size: '1G',
      count: 3,
      ok: true,
      none: null,
    });
  });

  it('matches keys case-insensitively and as part of a longer name', () => {
    expect(
      redact({ PASSWORD: 1, dbPassword: 2, accessToken: 3, client_secret: 4, tokenizer_mode: 5 }),
    ).toEqual({
      PASSWORD: '[redacted]',
      dbPassword: '[redacted]',
      accessToken: '[redacted]',
      client_secret: '[redacted]',
      tokenizer_mode: '[redacted]',
    });
  });

  it('masks at depth, inside nested objects and arrays', () => {
    const input = {
      op: 'create',
      options: { server: 'nas', mount: { password: 'x', opts: ['ro', { token: 'y', keep: 'z' }] } },
      headers: [{ Authorization: 'Basic abc' }, { Accept: 'json' }],
      secrets: ['a', 'b'],
    };
    expect(redact(input)).toEqual({
      op: 'create',
      options: {
        server: 'nas',
        mount: { password: '[redacted]', opts: ['ro', { token: '[redacted]', keep: 'z' }] },
      },
      headers: [{ Authorization: '[redacted]' }, { Accept: 'json' }],
      secrets: '[redacted]',
    });
  });

  it('masks a whole subtree under a secret key, whatever its type', () => {
    expect(redact({ secret: { nested: { deeper: 'x' } }, token: ['a'], password: 0 })).toEqual({
      secret: '[redacted]',
      token: '[redacted]',
      password: '[redacted]',
    });
  });

  it('does not change its input', () => {
    const input = { password: 'p', inner: { token: 't' }, list: [{ secret: 's' }] };
    const copy = structuredClone(input);
    redact(input);
    expect(input).toEqual(copy);
  });

  it('passes scalars, null and arrays of scalars through', () => {
    expect(redact('password')).toBe('password');
    expect(redact(42)).toBe(42);
    expect(redact(null)).toBeNull();
    expect(redact(undefined)).toBeUndefined();
    expect(redact(['a', 1, null])).toEqual(['a', 1, null]);
  });

  it('keeps Error objects as they are, for the serializer', () => {
    const err = new Error('mount failed');
    expect((redact({ err }) as { err: unknown }).err).toBe(err);
  });

  it('masks secrets six levels down', () => {
    const deep = { a: { b: { c: { d: { e: { f: { password: 'x', keep: 1 } } } } } } };
    expect(redact(deep)).toEqual({
      a: { b: { c: { d: { e: { f: { password: '[redacted]', keep: 1 } } } } } },
    });
  });
});

describe('createLogger', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-log-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes JSON lines with the base bindings and masked secrets to a file (creating its directory)', async () => {
    const file = join(dir, 'sub', 'stowage.log');
    const log = createLogger({ level: 'info', file, base: { host: 'h1' } });
    log.debug({ volume: 'db' }, 'below the level');
    log.info(
      { op: 'create', volume: 'db', options: { server: 'nas', password: 'hunter2' } },
      'volume created',
    );
    log.flush();

    const text = await pollUntil(
      async () => {
        const t = await readFile(file, 'utf8').catch(() => '');
        return t.includes('\n') ? t : undefined;
      },
      { timeoutMs: 5_000, what: 'the log line' },
    );
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('below the level');
    const lines = text.trim().split('\n');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({
      level: 30,
      host: 'h1',
      op: 'create',
      volume: 'db',
      options: { server: 'nas', password: '[redacted]' },
      msg: 'volume created',
    });
    expect(Number.isNaN(Date.parse(String(line.time)))).toBe(false);
  });
});

describe('redact depth (regression)', () => {
  it('never lets a secret through below the depth it walks', () => {
    const deep = { a: { b: { c: { d: { e: { f: { g: { h: { password: 'hunter2' } } } } } } } } };
    expect(JSON.stringify(redact(deep))).not.toContain('hunter2');
  });
});
