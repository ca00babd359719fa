import { StowageError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, '': 1000 };

/** Parses `30s`, `500ms`, `2m`, `1h` or a bare number of seconds into milliseconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(text.trim());
  const ms = m ? Math.round(Number(m[1]) * (UNIT_MS[(m[2] ?? '').toLowerCase()] ?? 1000)) : Number.NaN;
  if (!m || !(ms > 0)) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `${what} ${JSON.stringify(text)} is not a duration: use seconds (30) or a number with a unit (500ms, 30s, 2m)`,
    );
  }
  return ms;
}
