import * as z from 'zod';
import {
  accessOption,
  durationOption,
  lazyOptionSpecs,
  mountOptionsOption,
  numericIdOption,
  type OptionSpecs,
  oneOf,
  preemptOption,
  remotePathOption,
  subdirOption,
} from '../../src/index.js';

export type NfsVersion = '3' | '4' | '4.1' | '4.2';

/** Canonical options of an NFS volume, as recorded at Create. */
export type NfsOptions = {
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
  access?: 'multi-host' | 'single-host';
  preempt?: boolean;
};

export const NFS_OPTION_SPECS: OptionSpecs = lazyOptionSpecs({
  server: {
    aliases: ['host'],
    schema: () =>
      z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.:-]*$/, { message: 'must be a hostname or an IP address' }),
    help: 'NFS server name or address',
  },
  share: {
    aliases: ['exportBase'],
    schema: () => remotePathOption('must be an absolute path on the server such as /exports/data'),
    help: 'base export; each volume gets a subdirectory of it',
  },
  export: {
    schema: () => remotePathOption('must be an absolute path on the server such as /exports/data'),
    help: 'mount this export itself, with no subdirectory (never deleted)',
  },
  subdir: {
    schema: () => subdirOption,
    help: 'subdirectory under share; default the volume name; {name} is replaced',
  },
  mountOptions: {
    aliases: ['mntOptions'],
    schema: () => mountOptionsOption,
    help: 'comma-separated mount options, merged over the configured defaults',
  },
  nfsVersion: {
    aliases: ['nfsvers'],
    schema: () => oneOf(['3', '4', '4.1', '4.2']),
    help: 'NFS protocol version',
  },
  onRemove: {
    schema: () =>
      oneOf(['retain', 'delete', 'purge', 'archive']).transform((p) => (p === 'purge' ? 'delete' : p)),
    help: 'retain, delete (alias purge) or archive (rename to archived-<subdir>-<time>)',
  },
  mode: {
    aliases: ['mountPermissions'],
    schema: () => z.string().regex(/^0?[0-7]{3,4}$/, { message: 'must be an octal mode such as 0755' }),
    help: 'mode of the created directory',
  },
  uid: { schema: () => numericIdOption, help: 'owner uid of the created directory' },
  gid: { schema: () => numericIdOption, help: 'owner gid of the created directory' },
  mountTimeout: {
    schema: () => durationOption(600_000, '10m'),
    help: 'how long a mount may wait for the server, e.g. 30s',
  },
  access: accessOption,
  preempt: preemptOption,
});
