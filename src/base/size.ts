import { StowageError } from './errors.js';

const UNITS: Record<string, number> = {
  '': 1024 ** 3, // a bare number means GiB, as EBS's `size` does, so `-o size=10` is the same everywhere
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
};

// `10` (GiB), `64M`, `64MiB`, `64MB` (all binary), `512B` (bytes).
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|(B))?$/i;

/** Parses `64M`, `1G`, `1.5GiB`, `10` (GiB) into bytes. */
export function parseSize(text: string, what = 'size'): number {
  const m = SIZE_RE.exec(text.trim());
  if (!m) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `${what} ${JSON.stringify(text)} is not a size: use a number of GiB (10) or a number with a unit (64M, 1G, 2T)`,
    );
  }
  const factor = m[3] ? 1 : (UNITS[(m[2] ?? '').toUpperCase()] ?? 1);
  return Math.floor(Number(m[1]) * factor);
}

export function formatSize(bytes: number): string {
  for (const [unit, factor] of [
    ['T', 1024 ** 4],
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['K', 1024],
  ] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)}M`;
  return `${bytes}B`;
}
