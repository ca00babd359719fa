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
  spec: string; // as written: './x.js', 'zod', 'node:path'
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
    out.push({ from: file, to, spec, typeOnly: m[2] !== undefined });
  }
  return out;
}

function all(...dirs: string[]): Import[] {
  return dirs.flatMap((d) => (d.endsWith('.ts') ? importsOf(d) : sources(d).flatMap(importsOf)));
}

const show = (i: Import) => `${i.from} -> ${i.to || i.spec}`;

/** A driver's config section: drivers/<name>/config.ts. */
const isDriverConfig = (file: string) => /^drivers\/[^/]+\/config\.ts$/.test(file);

/** Every file `entry` loads when imported (type-only imports load nothing), with their imports. */
function loadedBy(entry: string): Import[] {
  const seen = new Set<string>();
  const out: Import[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const i of importsOf(file).filter((x) => !x.typeOnly)) {
      out.push(i);
      if (i.to) visit(i.to);
    }
  };
  visit(entry);
  return out;
}

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
      (i) =>
        /^src\/(core|docker|cli|runtime|index|metrics)/.test(i.to) ||
        /^(drivers|flexvolume|csi)\//.test(i.to),
    );
    // The one exception: the config composes its schema (and the environment its older variable
    // names) from the drivers' sections, which it finds through the catalog (and those import only
    // src/base: checked below).
    const sections = (i: Import) =>
      ['src/config.ts', 'src/config-env.ts'].includes(i.from) &&
      (i.to === 'drivers/catalog.ts' || isDriverConfig(i.to));
    expect(upward.filter((i) => !sections(i)).map(show)).toEqual([]);
  });

  it("loading the driver catalog loads its drivers' config sections and src/base only: no zod, no driver", () => {
    // flexvolume `init` imports the catalog at every kubelet probe: zod alone costs ~27 ms to load.
    const loaded = loadedBy('drivers/catalog.ts');
    const allowed = (i: Import) =>
      i.to ? isDriverConfig(i.to) || i.to.startsWith('src/base/') : i.spec.startsWith('node:');
    expect(loaded.filter((i) => !allowed(i)).map(show)).toEqual([]);
    expect(loaded.filter((i) => isDriverConfig(i.to)).length).toBeGreaterThan(0);
    expect(loaded.filter((i) => i.to.startsWith('src/base/')).map((i) => i.to)).not.toContain(
      'src/base/config-kit.ts',
    );
  });

  it('a store-opening flexvolume call loads neither yaml nor pino, and zod only as a namespace import', () => {
    // kubelet starts the executable once per call: its config comes from the config cache
    // (src/config-cache.ts; yaml and the config schema load only on a miss) and its log lines from
    // src/log-lines.ts. `import * as z from 'zod'` (property reads only) lets the bundler keep just
    // the parts of zod the option schemas use: `import { z }` is one object holding all of zod.
    const entries = [
      'flexvolume/calls.ts',
      ...sources('drivers').filter((f) => /^drivers\/[^/]+\/index\.ts$/.test(f)),
    ];
    const loaded = entries.flatMap(loadedBy);
    expect(loaded.filter((i) => i.spec === 'yaml' || i.spec === 'pino').map(show)).toEqual([]);
    const zodUsers = [...new Set(loaded.filter((i) => i.spec === 'zod').map((i) => i.from))];
    expect(zodUsers.length).toBeGreaterThan(0);
    const wholeZod = zodUsers.filter(
      (f) => !/^import \* as z from 'zod';$/m.test(readFileSync(join(ROOT, f), 'utf8')),
    );
    expect(wholeZod).toEqual([]);
  });

  it('a store-opening flexvolume call of a local or nfs volume does not load node:crypto', () => {
    // ~2.5 ms of every call: the rare paths that need it load it on first use (src/base/node-crypto.ts).
    // The AWS drivers load it with the SDK anyway.
    const loaded = ['flexvolume/calls.ts', 'drivers/local/index.ts', 'drivers/nfs/index.ts'].flatMap(
      loadedBy,
    );
    expect(loaded.length).toBeGreaterThan(0);
    expect(loaded.filter((i) => i.spec === 'node:crypto' || i.spec === 'crypto').map(show)).toEqual([]);
  });

  it('the flexvolume door reaches the store and the kernel only through the core and the runtime', () => {
    expect(
      all('flexvolume')
        .filter((i) => /^src\/(state|mount)\//.test(i.to))
        .map(show),
    ).toEqual([]);
  });

  it('the CSI door reaches the store and the kernel only through the core, and no other door', () => {
    // src/cli/csi.ts composes it (runtime, startup); csi/ itself only calls the VolumeManager.
    expect(
      all('csi')
        .filter(
          (i) => /^src\/(state|mount|runtime|docker|cli|metrics)/.test(i.to) || /^flexvolume\//.test(i.to),
        )
        .map(show),
    ).toEqual([]);
    expect(all('csi').length).toBeGreaterThan(0);
  });

  it('the core uses the seams only through their interfaces (types, and the store record helpers)', () => {
    const concrete = all('src/core').filter(
      (i) => /^src\/(state|mount|cloud|net)\//.test(i.to) && !i.typeOnly && i.to !== 'src/state/store.ts',
    );
    expect(concrete.map(show)).toEqual([]);
    const above = all('src/core').filter(
      (i) => /^src\/(docker|cli|runtime|metrics)/.test(i.to) || /^(drivers|flexvolume|csi)\//.test(i.to),
    );
    expect(above.map(show)).toEqual([]);
  });

  it('metrics are fed through observers: src/metrics knows the rest only by type, and only the daemon loads it', () => {
    // The seams, the core and the drivers call plain functions (onWait, observe, ...) the runtime
    // hands them; none of them, nor the flexvolume door, loads prom-client.
    expect(
      all('src/metrics')
        .filter((i) => i.to && !i.typeOnly && !/^src\/(base|metrics)\//.test(i.to))
        .map(show),
    ).toEqual([]);
    const loaders = all('src', 'drivers', 'flexvolume', 'csi').filter(
      (i) =>
        !i.from.startsWith('src/metrics/') &&
        (i.spec === 'prom-client' || (/^src\/metrics\//.test(i.to) && !i.typeOnly)),
    );
    expect(loaders.map(show)).toEqual([]);
  });

  it('drivers import stowage only through src/index.ts (their config sections and the catalog: src/base)', () => {
    const sectionFile = (f: string) => f === 'drivers/catalog.ts' || isDriverConfig(f);
    const direct = all('drivers').filter(
      (i) =>
        i.to.startsWith('src/') &&
        i.to !== 'src/index.ts' &&
        !(sectionFile(i.from) && i.to.startsWith('src/base/')),
    );
    expect(direct.map(show)).toEqual([]);
    const sectionImports = all('drivers').filter((i) => isDriverConfig(i.from));
    expect(sectionImports.filter((i) => i.to && !i.to.startsWith('src/base/')).map(show)).toEqual([]);
  });

  it('drivers get their config section and their recorded options typed: no casts through unknown, no any', () => {
    const casts = sources('drivers').flatMap((file) =>
      readFileSync(join(ROOT, file), 'utf8')
        .split('\n')
        .flatMap((line, n) =>
          /\bas unknown as\b|\bas any\b|:\s*any\b/.test(line) ? [`${file}:${n + 1}`] : [],
        ),
    );
    expect(casts).toEqual([]);
  });
});
