/**
 * What the crash campaign knows about each volume from the replies it got. A request that was in
 * flight when the daemon was killed has an unknown outcome: the model keeps both possibilities
 * (`maybe`) until the checks after the restart settle them from what the daemon says.
 */
export type Existence = 'yes' | 'no' | 'maybe';

export interface VolumeModel {
  name: string;
  /** Fixed per name for the whole campaign: a Create with other options would be a CONFLICT. */
  size: string;
  exists: Existence;
  /** Mount IDs whose Mount was answered with success and not unmounted since. */
  acked: Set<string>;
  /** Mount IDs whose Mount or Unmount was cut off by a kill: counted or not. */
  unsure: Set<string>;
  /** Files written (and fsynced) into the volume: path relative to its root -> content. */
  files: Map<string, string>;
}

export function newModel(name: string, size: string): VolumeModel {
  return { name, size, exists: 'no', acked: new Set(), unsure: new Set(), files: new Map() };
}

/** A small deterministic PRNG (mulberry32): the same seed gives the same operations and delays. */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
    chance: (p: number) => next() < p,
  };
}

export type Rng = ReturnType<typeof prng>;
