import type { Rng } from '../crash/model.js';

/**
 * Requests for the socket fuzz: mostly well-formed Docker plugin calls with mutated fields (what a
 * confused or hostile client sends), some outright garbage. Names are drawn from a small valid pool
 * so that real volumes get created, mounted and removed in between.
 */
export const ROUTES = [
  'Plugin.Activate',
  'VolumeDriver.Capabilities',
  'VolumeDriver.Create',
  'VolumeDriver.Remove',
  'VolumeDriver.Mount',
  'VolumeDriver.Unmount',
  'VolumeDriver.Path',
  'VolumeDriver.Get',
  'VolumeDriver.List',
];

export const VALID_NAMES = ['fuzz-a', 'fuzz-b', 'fuzz-c'];
export const VALID_IDS = ['a', 'b'].map((c) => c.repeat(64));

export interface FuzzRequest {
  method: string;
  path: string;
  body: string | Buffer;
}

/** `outside` is a directory next to the daemon's own; names try to reach it. */
export function fuzzRequest(rng: Rng, outside: string): FuzzRequest {
  const method = rng.chance(0.93) ? 'POST' : rng.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
  const path = rng.chance(0.9) ? `/${rng.pick(ROUTES)}` : rng.pick(oddPaths(rng));
  return { method, path, body: fuzzBody(rng, outside) };
}

function oddPaths(rng: Rng): string[] {
  return [
    '/',
    '/VolumeDriver.',
    '/VolumeDriver.Create/../Remove',
    '/../../etc/passwd',
    `/${'x'.repeat(rng.int(1, 5000))}`,
    `/VolumeDriver.Get?Name=${encodeURIComponent('../x')}`,
    '/volumedriver.create',
    '/VolumeDriver.Create%00',
  ];
}

function fuzzBody(rng: Rng, outside: string): string | Buffer {
  const r = rng.next();
  if (r < 0.7) return JSON.stringify(mutatedCall(rng, outside));
  if (r < 0.8) return JSON.stringify(mutatedCall(rng, outside)).slice(0, rng.int(0, 40)); // truncated
  if (r < 0.85) return Buffer.from(Array.from({ length: rng.int(1, 300) }, () => rng.int(0, 255)));
  if (r < 0.9) return rng.pick(['null', '[]', '42', '"Name"', 'true', '{', '}{', '\u0000', '']);
  if (r < 0.95) return `${'['.repeat(rng.int(100, 20_000))}${']'.repeat(rng.int(0, 100))}`; // deep nesting
  return JSON.stringify({ Name: VALID_NAMES[0], Opts: { size: 'x'.repeat(rng.int(60_000, 300_000)) } });
}

function mutatedCall(rng: Rng, outside: string): Record<string, unknown> {
  const call: Record<string, unknown> = {};
  if (rng.chance(0.9)) call.Name = rng.chance(0.6) ? rng.pick(VALID_NAMES) : oddValue(rng, outside);
  if (rng.chance(0.5)) call.ID = rng.chance(0.7) ? rng.pick(VALID_IDS) : oddValue(rng, outside);
  if (rng.chance(0.5)) call.Opts = rng.chance(0.6) ? options(rng, outside) : oddValue(rng, outside);
  if (rng.chance(0.1)) call[rng.pick(['__proto__', 'constructor', 'Extra', ''])] = oddValue(rng, outside);
  return call;
}

function options(rng: Rng, outside: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = rng.int(0, 4); i > 0; i--) {
    const key = rng.pick([
      'size',
      'fsType',
      'onRemove',
      'SIZE',
      'imageDir',
      'mountpoint',
      'o',
      '',
      'a'.repeat(500),
    ]);
    out[key] = rng.chance(0.5)
      ? rng.pick([
          '16M',
          '64M',
          '1',
          '0',
          '-1',
          '1e30',
          '9999999T',
          'ext4',
          'xfs',
          'btrfs',
          'delete',
          'retain',
        ])
      : oddValue(rng, outside);
  }
  return out;
}

function oddValue(rng: Rng, outside: string): unknown {
  return rng.pick<unknown>([
    '',
    '..',
    '.',
    `../${outside.split('/').pop()}/x`,
    `${outside}/x`,
    '../../../../tmp',
    'a/b',
    'x',
    'n'.repeat(rng.int(129, 3000)),
    'ünïcødé-名前',
    'name\u0000null',
    'name\nnewline',
    ' spaced ',
    '-dash',
    null,
    0,
    -1,
    1.5,
    true,
    [],
    ['fuzz-a'],
    {},
    { Name: 'fuzz-a' },
    'a'.repeat(64).replace(/^a/, 'g'),
    'A'.repeat(200),
  ]);
}
