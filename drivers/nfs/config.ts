import { configSection, type SectionValue } from '../../src/base/config-section.js';

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
});

export type NfsConfig = SectionValue<typeof nfsConfig>;
