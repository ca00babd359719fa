import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The import rules of docs/architecture.md, checked on the source: a layer imports only the layers
 * below it, so the picture in the docs stays the picture of the code.
 */
const ROOT = resolve(import.meta.dirname, '..');

interface Import {
  from: string; // the importing file, relative to the root
  to: string; // the imported file, relative to the root ('' for a package)
  typeOnly: boolean;
}

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

function importsOf(file: string): Import[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const out: Import[] = [];
  for (const m of text.matchAll(/^(import|export)(\s+type)?[^;]*?from\s+'([^']+)'/gms)) {
    const spec = m[3]!;
    const to = spec.startsWith('.')
      ? relative(ROOT, resolve(ROOT, dirname(file), spec)).replace(/\.js$/, '.ts')
      : '';
    out.push({ from: file, to, typeOnly: m[2] !== undefined });
  }
  return out;
}

function all(...dirs: string[]): Import[] {
  return dirs.flatMap((d) => (d.endsWith('.ts') ? importsOf(d) : sources(d).flatMap(importsOf)));
}

const show = (i: Import) => `${i.from} -> ${i.to}`;

describe('the layers of docs/architecture.md', () => {
  it('src/base imports nothing of stowage outside itself', () => {
    expect(
      all('src/base')
        .filter((i) => i.to && !i.to.startsWith('src/base/'))
        .map(show),
    ).toEqual([]);
  });

  it('the seams (state, mount, cloud, net) and the config import nothing of the core or above', () => {
    const seams = all('src/state', 'src/mount', 'src/cloud', 'src/net', 'src/config.ts', 'src/config-env.ts');
    const upward = seams.filter(
      (i) => /^src\/(core|docker|cli|runtime|index)/.test(i.to) || /^(drivers|flexvolume)\//.test(i.to),
    );
    expect(upward.map(show)).toEqual([]);
  });

  it('the core uses the seams only through their interfaces (types, and the store record helpers)', () => {
    const concrete = all('src/core').filter(
      (i) => /^src\/(state|mount|cloud|net)\//.test(i.to) && !i.typeOnly && i.to !== 'src/state/store.ts',
    );
    expect(concrete.map(show)).toEqual([]);
    const above = all('src/core').filter(
      (i) => /^src\/(docker|cli|runtime)/.test(i.to) || /^(drivers|flexvolume)\//.test(i.to),
    );
    expect(above.map(show)).toEqual([]);
  });

  it('drivers import stowage only through src/index.ts', () => {
    const direct = all('drivers').filter((i) => i.to.startsWith('src/') && i.to !== 'src/index.ts');
    expect(direct.map(show)).toEqual([]);
  });
});
