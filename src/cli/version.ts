import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The version in stowage's package.json, read at run time so that it cannot drift from the
 * package. The file is at ../../ from src/cli under tsx but ../../../ from dist/src/cli once
 * compiled, so walk up to the first package.json named "stowage" instead of counting levels.
 */
export function packageVersion(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    const pkg = readPackage(join(dir, 'package.json'));
    if (pkg?.name === 'stowage' && typeof pkg.version === 'string') return pkg.version;
    const up = dirname(dir);
    if (up === dir) return 'unknown'; // a copied bundle without its package.json: say so, do not fail
    dir = up;
  }
}

function readPackage(file: string): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
  } catch {
    return undefined; // none here (or unreadable): keep walking up
  }
}

/** `stowage 0.1.0 (node v22.11.0)`: the node version matters for the native SQLite addon. */
export function versionLine(): string {
  return `stowage ${packageVersion()} (node ${process.version})`;
}
