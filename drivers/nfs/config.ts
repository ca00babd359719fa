import { configSection, type SectionSetting, type SectionValue } from '../../src/base/config-section.js';
import { isNfsVersionOption } from '../../src/base/mount-options.js';

/** The `nfs` section of the config: defaults for volumes that do not give their own. */
export const nfsConfig = configSection({
  schema: ({ z, duration, octalMode }) =>
    z
      .object({
        /** Default server for volumes that give none (`-o server=`). */
        server: z.string().min(1).optional(),
        /** Default base export under which each volume gets its subdirectory. */
        share: z.string().startsWith('/', { message: 'must be an absolute export path' }).optional(),
        /** Mount options every NFS mount gets; a volume's own mountOptions are merged over them. */
        mountOptions: z.array(z.string().min(1)).default([]),
        nfsVersion: z.enum(['3', '4', '4.1', '4.2']).default('4.1'),
        onRemove: z.enum(['retain', 'delete', 'archive']).default('retain'),
        mode: octalMode.default('0755'),
        mountTimeout: duration.default('30s'),
      })
      .strict()
      .prefault({}),
  fromEnvironment: rancherNfsStack,
});

/**
 * The variables of rancher/storage's NFS stack (its catalog answers), for the same settings. The
 * stack puts the protocol version among MOUNT_OPTS; stowage keeps it in nfsVersion (the driver drops
 * vers= from the configured options), so it is moved there rather than lost.
 */
function rancherNfsStack(get: (name: string) => string | undefined): SectionSetting[] {
  const out: SectionSetting[] = [];
  const server = get('NFS_SERVER');
  if (server !== undefined) out.push({ key: ['server'], source: 'NFS_SERVER', value: server });
  const dir = get('MOUNT_DIR');
  if (dir !== undefined) out.push({ key: ['share'], source: 'MOUNT_DIR', value: dir });
  const opts = get('MOUNT_OPTS');
  if (opts !== undefined) {
    const list = opts
      .split(',')
      .map((o) => o.trim())
      .filter(Boolean);
    out.push({
      key: ['mountOptions'],
      source: 'MOUNT_OPTS',
      value: list.filter((o) => !isNfsVersionOption(o)),
    });
    const version = list.find((o) => isNfsVersionOption(o));
    // Set even when not one of 3/4/4.1/4.2, so that the schema refuses it naming MOUNT_OPTS.
    if (version) out.push({ key: ['nfsVersion'], source: 'MOUNT_OPTS', value: nfsVersion(version) });
  }
  const vers = get('NFS_VERS');
  if (vers !== undefined) out.push({ key: ['nfsVersion'], source: 'NFS_VERS', value: nfsVersion(vers) });
  return out;
}

/** `nfsvers=4.1`, `vers=3`, `4` -> the schema's form; 4.0 is the NFS driver's 4, as in -o vers=4.0. */
function nfsVersion(text: string): string {
  const v = text.trim().replace(/^(nfs)?vers=/i, '');
  return v === '4.0' ? '4' : v;
}

export type NfsConfig = SectionValue<typeof nfsConfig>;
