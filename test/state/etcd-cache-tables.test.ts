import { describe, expect, it } from 'vitest';
import { CacheTables } from '../../src/state/etcd-cache-tables.js';
import type { MountRecord, VolumeRecord } from '../../src/state/store.js';

/**
 * The read cache's tables alone (no etcd): what listSummaries answers (Docker's List) as keys
 * come and go, next to a plain scan of the same records.
 */

const at = '2026-11-29T10:00:00.000Z';
const vol = (name: string, driver = 'local'): VolumeRecord => ({
  name,
  driver,
  options: {},
  givenOptions: [],
  removePolicy: 'delete',
  adopted: false,
  createdAt: at,
  status: 'ready',
  fields: {},
});
const mnt = (volume: string, host: string, state: MountRecord['state'] = 'mounted'): MountRecord => ({
  volume,
  host,
  mountpoint: `/m/${host}/${volume}`,
  refs: { a: 1 },
  state,
  updatedAt: at,
});

function tables(volumes: VolumeRecord[], mounts: MountRecord[]): CacheTables {
  const t = new CacheTables();
  for (const v of volumes) t.apply(`volumes/${encodeURIComponent(v.name)}`, JSON.stringify(v));
  for (const m of mounts) t.apply(`mounts/${encodeURIComponent(m.volume)}/${m.host}`, JSON.stringify(m));
  return t;
}

/** The answer by a scan of every volume: what the copy-and-patch must equal. */
function scan(volumes: VolumeRecord[], mounts: MountRecord[], host: string, driver?: string) {
  return volumes
    .filter((v) => !driver || v.driver === driver)
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((v) => {
      const m = mounts.find((x) => x.volume === v.name && x.host === host && x.state === 'mounted');
      return {
        name: v.name,
        driver: v.driver,
        createdAt: v.createdAt,
        ...(m ? { mountpoint: m.mountpoint } : {}),
      };
    });
}

describe('CacheTables.listSummaries', () => {
  const volumes = ['v-07', 'v-02', 'v 10', 'v-05', 'v/01', 'é-03'].map((n, i) =>
    vol(n, i % 2 ? 'nfs' : 'local'),
  );
  const mounts = [
    mnt('v-07', 'h1'),
    mnt('v-02', 'h1', 'unmounting'),
    mnt('v 10', 'h1'),
    mnt('v-05', 'h2'),
    mnt('v/01', 'h1'),
    mnt('gone', 'h1'), // a mount whose volume is not (or not yet) there
  ];

  it("answers every volume by name with the host's own mountpoints, per driver filter", () => {
    const t = tables(volumes, mounts);
    for (const host of ['h1', 'h2', 'h3'])
      for (const driver of [undefined, 'local', 'nfs'])
        expect(t.listSummaries(host, driver ? { driver } : {})).toEqual(scan(volumes, mounts, host, driver));
  });

  it('follows mounts and volumes as they come and go, sharing the unmounted entries', () => {
    const t = tables(volumes, mounts);
    const first = t.listSummaries('h1');
    const now = [...mounts, mnt('v-02', 'h1')];
    t.apply('mounts/v-02/h1', JSON.stringify(now.at(-1)));
    const second = t.listSummaries('h1');
    expect(second).not.toBe(first);
    expect(second).toEqual(scan(volumes, now, 'h1'));
    const unmounted = second.findIndex((s) => s.name === 'é-03');
    expect(second[unmounted]).toBe(first[unmounted]);

    const more = [...volumes, vol('v-00'), vol('zz')];
    t.apply('volumes/v-00', JSON.stringify(vol('v-00')));
    t.apply('volumes/zz', JSON.stringify(vol('zz')));
    t.apply(`volumes/${encodeURIComponent('v 10')}`, undefined);
    const left = more.filter((v) => v.name !== 'v 10');
    expect(t.listSummaries('h1')).toEqual(scan(left, now, 'h1'));
    t.apply(`mounts/${encodeURIComponent('v/01')}/h1`, undefined);
    expect(t.listSummaries('h1')).toEqual(
      scan(
        left,
        now.filter((m) => m.volume !== 'v/01'),
        'h1',
      ),
    );
    expect(Object.isFrozen(t.listSummaries('h1'))).toBe(true);
  });
});
