import { isDeepStrictEqual } from 'node:util';
import { StowageError } from '../base/errors.js';
import type { StateStore } from './store.js';

export interface MigrationReport {
  hosts: number;
  volumes: number;
  attachments: number;
  mounts: number;
}

/**
 * Copies every host, volume, attachment and mount from one store to another (SQLite to etcd when a
 * site grows to several hosts), then reads everything back from the target and compares. Run it
 * with the daemons stopped. Refused, changing nothing, when the source has unfinished operations
 * (their intents belong to the host that started them: start its daemon once to finish them) or
 * when the target already holds volumes. Locks are not copied: nothing may hold one now.
 */
export async function migrateStore(from: StateStore, to: StateStore): Promise<MigrationReport> {
  const hosts = await from.listHosts();
  const volumes = await from.listVolumes();
  const hostIds = new Set(hosts.map((h) => h.id));
  const perVolume = [];
  for (const v of volumes) {
    const attachments = await from.getAttachments(v.name);
    const mounts = await from.getMounts(v.name);
    for (const x of [...attachments, ...mounts]) hostIds.add(x.host);
    perVolume.push({ volume: v, attachments, mounts });
  }
  for (const host of hostIds) {
    const open = await from.listIntents(host);
    if (open.length > 0) {
      throw new StowageError(
        'BUSY',
        `host ${host} has ${open.length} unfinished operation${open.length === 1 ? '' : 's'} (${open
          .map((i) => `${i.op} of ${i.volume}`)
          .join(', ')}); start stowage daemon on it once to finish them, stop it, then migrate`,
      );
    }
  }
  const existing = await to.listVolumes();
  if (existing.length > 0) {
    throw new StowageError(
      'CONFLICT',
      `the target store already holds ${existing.length} volume${existing.length === 1 ? '' : 's'} (${existing
        .slice(0, 5)
        .map((v) => v.name)
        .join(', ')}); migrate into an empty store (for etcd, a new prefix)`,
    );
  }
  for (const h of hosts) await to.upsertHost(h);
  for (const { volume, attachments, mounts } of perVolume) {
    await to.insertVolume(volume);
    for (const a of attachments) await to.putAttachment(a);
    for (const m of mounts) await to.putMount(m);
  }
  // Verified: what the target answers is what the source holds.
  const problems: string[] = [];
  const sortById = <T extends { id: string }>(xs: T[]) => [...xs].sort((a, b) => a.id.localeCompare(b.id));
  if (!isDeepStrictEqual(sortById(await to.listHosts()), sortById(hosts))) problems.push('hosts differ');
  for (const { volume, attachments, mounts } of perVolume) {
    const got = await to.getVolumeState(volume.name);
    const byHost = <T extends { host: string }>(xs: T[]) =>
      [...xs].sort((a, b) => a.host.localeCompare(b.host));
    if (!isDeepStrictEqual(got.volume, volume)) problems.push(`volume ${volume.name} differs`);
    if (!isDeepStrictEqual(byHost(got.attachments), byHost(attachments)))
      problems.push(`attachments of ${volume.name} differ`);
    if (!isDeepStrictEqual(byHost(got.mounts), byHost(mounts)))
      problems.push(`mounts of ${volume.name} differ`);
  }
  if ((await to.listVolumes()).length !== volumes.length) problems.push('the number of volumes differs');
  if (problems.length > 0) {
    throw new StowageError(
      'INTERNAL',
      `migration copied everything but the target does not read back the same: ${problems.slice(0, 10).join('; ')}`,
    );
  }
  return {
    hosts: hosts.length,
    volumes: volumes.length,
    attachments: perVolume.reduce((n, v) => n + v.attachments.length, 0),
    mounts: perVolume.reduce((n, v) => n + v.mounts.length, 0),
  };
}
