import { type DriverContext, type EfsApi, StowageError, type VolumeInput } from '../../src/index.js';
import { VOLUME_TAG } from './file-system.js';

export interface AccessPointWanted {
  fileSystemId: string;
  path: string;
  uid: number;
  gid: number;
  permissions: string;
}

/**
 * The access point of an `accessPoint=create` volume. A volume removed under `retain` keeps its
 * access point (tagged stowage.io/volume=<name>), so a later Create of the same name on the same
 * file system and path takes that one again instead of making a second; `reused` says so. Otherwise
 * the access point is made under the Create's client token, noted before the request (EFS answers
 * the same token with the same access point: a resumed Create finishes with it, and an
 * interrupted one can find it to delete it).
 */
export async function provideAccessPoint(
  efs: EfsApi,
  log: DriverContext['log'],
  volume: VolumeInput,
  want: AccessPointWanted,
  clientToken: string,
): Promise<{ id: string; reused: boolean }> {
  if (typeof volume.noted.accessPointToken !== 'string') {
    const left = await retainedAccessPoint(efs, volume.name, want);
    if (left) {
      log.info(
        { volume: volume.name, accessPointId: left, fileSystemId: want.fileSystemId, path: want.path },
        'reusing the access point a retained volume of this name left',
      );
      return { id: left, reused: true };
    }
  }
  await volume.note({ fileSystemId: want.fileSystemId, accessPointToken: clientToken });
  const ap = await efs.createAccessPoint({
    clientToken,
    fileSystemId: want.fileSystemId,
    path: want.path,
    uid: want.uid,
    gid: want.gid,
    permissions: want.permissions,
    tags: { Name: volume.name, [VOLUME_TAG]: volume.name },
  });
  await volume.note({ accessPointId: ap.id, createdAccessPoint: true });
  return { id: ap.id, reused: false };
}

/**
 * The access point an earlier volume of this name left on the file system at the same path; one
 * that acts as another POSIX user is refused (reusing it would hand the data to other ids).
 */
async function retainedAccessPoint(
  efs: EfsApi,
  name: string,
  want: AccessPointWanted,
): Promise<string | undefined> {
  const same = (await efs.listAccessPoints(want.fileSystemId)).filter(
    (a) =>
      a.tags?.[VOLUME_TAG] === name &&
      a.path === want.path &&
      a.state !== 'deleting' &&
      a.state !== 'deleted',
  );
  const fit = same.find((a) => a.uid === want.uid && a.gid === want.gid);
  if (fit) return fit.id;
  const other = same[0];
  if (!other) return undefined;
  throw new StowageError(
    'CONFLICT',
    `access point ${other.id} of an earlier volume ${name} serves ${want.path} on ${want.fileSystemId} as ` +
      `uid ${other.uid ?? '?'} gid ${other.gid ?? '?'}, not ${want.uid}:${want.gid}; give -o uid= -o gid= to match ` +
      `and reuse it, or delete it first (aws efs delete-access-point --access-point-id ${other.id})`,
  );
}

/** The access point an interrupted Create made under its client token, if EFS has it. */
export async function accessPointByToken(
  efs: EfsApi,
  fileSystemId: string,
  clientToken: string,
): Promise<string | undefined> {
  return (await efs.listAccessPoints(fileSystemId)).find((a) => a.clientToken === clientToken)?.id;
}
