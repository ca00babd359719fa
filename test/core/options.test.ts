import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isStowageError, type StowageError } from '../../src/base/errors.js';
import { type OptionSpecs, oneOf, parseOptions } from '../../src/core/options.js';

/** parseOptions: aliases, case-insensitive keys, defaults, and the messages of refused options. */

interface DemoOptions {
  server: string;
  path: string;
  mode: 'ro' | 'rw';
  retries: number;
}

const SPECS: OptionSpecs = {
  server: { aliases: ['host', 'addr'], schema: z.string().min(1), help: 'the NFS server, e.g. nas.lan' },
  path: { aliases: ['share'], schema: z.string().startsWith('/'), help: 'the exported path, e.g. /export' },
  mode: { schema: oneOf(['ro', 'rw']), help: 'ro or rw' },
  retries: {
    schema: z.coerce.number().int().min(0).max(10),
    help: 'how often a mount is retried, 0-10',
  },
};

function parse(raw: Record<string, string>, defaults: Partial<Record<keyof DemoOptions, unknown>> = {}) {
  return parseOptions<DemoOptions>('demo', SPECS, raw, defaults);
}

/** What parse() throws for `raw`; fails the test when it returns. */
function refusal(raw: Record<string, unknown>, defaults: Partial<Record<keyof DemoOptions, unknown>> = {}) {
  let thrown: unknown;
  try {
    parse(raw as Record<string, string>, defaults);
  } catch (err) {
    thrown = err;
  }
  expect(isStowageError(thrown, 'INVALID_ARGUMENT'), `not INVALID_ARGUMENT: ${String(thrown)}`).toBe(true);
  return thrown as StowageError;
}

describe('parseOptions', () => {
  it('maps aliases to canonical names', () => {
    const res = parse({ host: 'nas.lan', share: '/export', mode: 'ro' });
    expect(res.values).toEqual({ server: 'nas.lan', path: '/export', mode: 'ro' });
    expect(res.given.sort()).toEqual(['mode', 'path', 'server']);
    expect(parse({ addr: '10.0.0.1' }).values).toEqual({ server: '10.0.0.1' });
  });

  it('matches keys case-insensitively, for canonical names and aliases alike', () => {
    const res = parse({ SERVER: 'a', Share: '/x', MoDe: 'rw' });
    expect(res.values).toEqual({ server: 'a', path: '/x', mode: 'rw' });
    expect(res.given.sort()).toEqual(['mode', 'path', 'server']);
    // Values are not case-folded: the schema decides.
    expect(refusal({ mode: 'RW' }).message).toContain('must be one of ro, rw');
  });

  it('applies defaults for options not given, and `given` lists only the explicit canonical names', () => {
    const res = parse({ HOST: 'nas' }, { mode: 'rw', retries: '3' });
    // Defaults go through the schema too (here: coerced to a number).
    expect(res.values).toEqual({ server: 'nas', mode: 'rw', retries: 3 });
    expect(res.given).toEqual(['server']);

    // An explicit value wins over the default and is listed.
    const explicit = parse({ mode: 'ro' }, { mode: 'rw' });
    expect(explicit.values).toEqual({ mode: 'ro' });
    expect(explicit.given).toEqual(['mode']);

    // Options neither given nor defaulted are absent, not undefined-valued.
    expect(Object.keys(parse({}).values)).toEqual([]);
    expect(parse({}).given).toEqual([]);
  });

  it('refuses an unknown key, listing every valid option with its aliases', () => {
    const err = refusal({ server: 'nas', sever: 'x' });
    expect(err.message).toBe(
      'unknown option "sever" for driver demo; valid options: server (alias host, addr), path (alias share), mode, retries',
    );
  });

  it('refuses the same option given twice, under an alias and its canonical name', () => {
    const err = refusal({ server: 'a', host: 'b' });
    expect(err.message).toBe('option "host" repeats "server" (both mean server); give it once');
    // Two aliases, or two spellings differing only by case, are the same option too.
    expect(refusal({ host: 'a', addr: 'b' }).message).toBe(
      'option "addr" repeats "host" (both mean server); give it once',
    );
    expect(refusal({ mode: 'ro', MODE: 'rw' }).message).toBe(
      'option "MODE" repeats "mode" (both mean mode); give it once',
    );
  });

  it('a schema failure names the option as the user spelled it, the value, the driver and the help', () => {
    const err = refusal({ share: 'export' });
    expect(err.message).toMatch(
      /^option share="export" for driver demo: .+ \(the exported path, e\.g\. \/export\)$/,
    );
    const retries = refusal({ Retries: '11' });
    expect(retries.message).toMatch(
      /^option Retries="11" for driver demo: .+ \(how often a mount is retried, 0-10\)$/,
    );
    expect(refusal({ mode: 'rx' }).message).toBe(
      'option mode="rx" for driver demo: must be one of ro, rw (ro or rw)',
    );
  });

  it('a bad default is reported under the canonical name', () => {
    expect(refusal({}, { retries: 'many' }).message).toMatch(/^option retries="many" for driver demo: /);
  });

  it('refuses a value that is not a string (a JSON body with a number or an object)', () => {
    expect(refusal({ retries: 3 }).message).toBe('option retries must be a string value');
    expect(refusal({ server: { a: 1 } }).message).toBe('option server must be a string value');
  });

  it('a driver without options refuses every key, saying so', () => {
    let thrown: unknown;
    try {
      parseOptions('bare', {}, { size: '1G' });
    } catch (err) {
      thrown = err;
    }
    expect(isStowageError(thrown, 'INVALID_ARGUMENT')).toBe(true);
    expect((thrown as Error).message).toBe('unknown option "size" for driver bare; valid options: ');
    expect(parseOptions('bare', {}, {})).toEqual({ values: {}, given: [] });
  });
});
