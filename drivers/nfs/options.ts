import { z } from 'zod';
import { type OptionSpecs, oneOf, parseDuration } from '../../src/index.js';

export type NfsVersion = '3' | '4' | '4.1' | '4.2';

/** Canonical options of an NFS volume, as recorded at Create. */
export interface NfsOptions {
  server: string;
  share?: string;
  export?: string;
  subdir?: string;
  mountOptions?: string[];
  nfsVersion: NfsVersion;
  onRemove: 'retain' | 'delete' | 'archive';
  mode: string;
  uid?: number;
  gid?: number;
  mountTimeout: string;
}

export interface NfsConfig {
  server?: string;
  share?: string;
  mountOptions: string[];
  nfsVersion: NfsVersion;
  onRemove: 'retain' | 'delete' | 'archive';
  mode: string;
  mountTimeout: string;
}

// A path segment: what a volume name may be, so every subdirectory stays inside the share.
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MOUNT_OPTION = /^[A-Za-z0-9_]+(=[A-Za-z0-9_.:/@+-]+)?$/;

const remotePath = z
  .string()
  .regex(/^\/[A-Za-z0-9_.@+/-]*$/, {
    message: 'must be an absolute path on the server such as /exports/data',
  })
  .refine((p) => !p.split('/').includes('..'), { message: 'must not contain ".."' })
  .transform((p) => (p.length > 1 ? p.replace(/\/+$/, '') : p));

const subdir = z
  .string()
  .transform((s) => s.replace(/^\/+|\/+$/g, ''))
  .refine(
    (s) => s.split('/').every((seg) => SEGMENT.test(seg.replaceAll('{name}', 'n')) && !seg.includes('..')),
    {
      message: 'must be a relative path of names ([A-Za-z0-9_.-], no ".."), may use {name}',
    },
  );

const mountOptions = z.union([z.string(), z.array(z.string())]).transform((v, ctx) => {
  const list = (Array.isArray(v) ? v : v.split(',')).map((o) => o.trim()).filter(Boolean);
  const bad = list.find((o) => !MOUNT_OPTION.test(o));
  if (bad !== undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(bad)} is not a mount option (key or key=value)`,
    });
    return z.NEVER;
  }
  return list;
});

const id = z
  .string()
  .regex(/^\d{1,10}$/, { message: 'must be a numeric id' })
  .transform(Number);

const duration = z.string().refine(
  (t) => {
    try {
      return parseDuration(t) <= 600_000;
    } catch {
      return false;
    }
  },
  { message: 'must be a duration up to 10m such as 30s' },
);

export const NFS_OPTION_SPECS: OptionSpecs = {
  server: {
    aliases: ['host'],
    schema: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9.:-]*$/, { message: 'must be a hostname or an IP address' }),
    help: 'NFS server name or address',
  },
  share: {
    aliases: ['exportBase'],
    schema: remotePath,
    help: 'base export; each volume gets a subdirectory of it',
  },
  export: { schema: remotePath, help: 'mount this export itself, with no subdirectory (never deleted)' },
  subdir: { schema: subdir, help: 'subdirectory under share; default the volume name; {name} is replaced' },
  mountOptions: {
    aliases: ['mntOptions'],
    schema: mountOptions,
    help: 'comma-separated mount options, merged over the configured defaults',
  },
  nfsVersion: { aliases: ['nfsvers'], schema: oneOf(['3', '4', '4.1', '4.2']), help: 'NFS protocol version' },
  onRemove: {
    schema: oneOf(['retain', 'delete', 'purge', 'archive']).transform((p) => (p === 'purge' ? 'delete' : p)),
    help: 'retain, delete (alias purge) or archive (rename to archived-<subdir>-<time>)',
  },
  mode: {
    aliases: ['mountPermissions'],
    schema: z.string().regex(/^0?[0-7]{3,4}$/, { message: 'must be an octal mode such as 0755' }),
    help: 'mode of the created directory',
  },
  uid: { schema: id, help: 'owner uid of the created directory' },
  gid: { schema: id, help: 'owner gid of the created directory' },
  mountTimeout: { schema: duration, help: 'how long a mount may wait for the server, e.g. 30s' },
};
