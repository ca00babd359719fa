import { DRIVER_NAMES, DRIVER_TRAITS, type DriverName } from '../../drivers/catalog.js';
import { NODE_OPTIONS } from '../node-options.js';

/**
 * The config.json of each managed plugin (https://docs.docker.com/engine/extend/config/), one
 * plugin per driver so that each is enabled, upgraded and given its settings on its own.
 */
export const DRIVERS: readonly DriverName[] = DRIVER_NAMES;
export type PluginDriver = DriverName;

/** Inside the plugin: every Mountpoint stowage returns lies under this, which dockerd sees. */
export const PROPAGATED_MOUNT = '/mnt/stowage';
/** Inside the plugin: the state (SQLite store, local images), bound from a host directory. */
export const STATE_DIR = '/var/lib/stowage';
/** On the host: <root>/<driver> keeps a plugin's state across disable, upgrade and rm + create. */
export const DEFAULT_STATE_ROOT = '/var/lib/stowage/plugins';

/** Settings a user changes with `docker plugin set NAME VAR=value`, per driver. */
const COMMON_SETTABLE = ['STOWAGE_LOG_LEVEL', 'RANCHER_DEBUG', 'STOWAGE_HOST_ID', 'STOWAGE_STATE'];
const AWS_SETTABLE = [
  'AWS_REGION',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'STOWAGE_AWS_IMDS_ENDPOINT',
  'STOWAGE_AWS_INSTANCE_ID',
  'STOWAGE_AWS_AVAILABILITY_ZONE',
];
export const SETTABLE: Record<PluginDriver, string[]> = {
  local: ['STOWAGE_LOCAL_DEFAULT_SIZE', 'STOWAGE_LOCAL_MAX_SIZE', 'STOWAGE_LOCAL_DEFAULT_FS_TYPE'],
  nfs: ['NFS_SERVER', 'MOUNT_DIR', 'MOUNT_OPTS', 'NFS_VERS', 'ON_REMOVE', 'STOWAGE_NFS_MOUNT_TIMEOUT'],
  efs: [...AWS_SETTABLE, 'STOWAGE_EFS_ENDPOINT', 'STOWAGE_EFS_FILE_SYSTEM_ID', 'ON_REMOVE'],
  ebs: [
    ...AWS_SETTABLE,
    'STOWAGE_EBS_ENDPOINT',
    'STOWAGE_EBS_DEFAULT_SIZE_GIB',
    'STOWAGE_EBS_DEFAULT_TYPE',
    'STOWAGE_EBS_DEFAULT_FS_TYPE',
    // Where attached disks appear: only unusual hosts (and the test suite) change these.
    'STOWAGE_EBS_DEV_DIR',
    'STOWAGE_EBS_BY_ID_DIR',
  ],
};

/** Loop devices (local) and attached EBS disks (ebs) are device nodes the plugin must open. */
function needsDevices(driver: PluginDriver): boolean {
  return DRIVER_TRAITS[driver].usesDevices;
}

export function socketName(driver: PluginDriver): string {
  return `stowage-${driver}.sock`;
}

export function pluginConfig(driver: PluginDriver, stateRoot = DEFAULT_STATE_ROOT): Record<string, unknown> {
  const fixed: Record<string, string> = {
    STOWAGE_DRIVERS: driver,
    // dockerd finds interface.socket in the plugin's /run/docker/plugins.
    STOWAGE_SOCKET_DIR: '/run/docker/plugins',
    STOWAGE_SOCKET_PREFIX: 'stowage-',
    STOWAGE_DATA_DIR: STATE_DIR,
    STOWAGE_MOUNT_ROOT: `${PROPAGATED_MOUNT}/volumes`,
  };
  const mounts: Record<string, unknown>[] = [
    {
      name: 'state',
      description: 'host directory with the state store and local volume images (set before enable)',
      source: `${stateRoot}/${driver}`,
      destination: STATE_DIR,
      type: 'bind',
      options: ['rbind', 'rw'],
      settable: ['source'],
    },
  ];
  if (needsDevices(driver)) {
    mounts.push({ name: 'dev', source: '/dev', destination: '/dev', type: 'bind', options: ['rbind', 'rw'] });
  }
  return {
    description: `stowage ${driver} volumes`,
    documentation: 'https://github.com/stowage/stowage/blob/main/docs/docker-plugin.md',
    entrypoint: ['node', '--no-warnings', '/opt/stowage/bin/stowage.js', 'daemon'],
    workdir: '/opt/stowage',
    interface: { types: ['docker.volumedriver/1.0'], socket: socketName(driver) },
    network: { type: 'host' },
    // The daemon compares its mount namespace with the host's init (/proc/1) to check propagation.
    pidhost: true,
    propagatedMount: PROPAGATED_MOUNT,
    mounts,
    linux: {
      capabilities: ['CAP_SYS_ADMIN'],
      allowAllDevices: needsDevices(driver),
      devices: null,
    },
    env: [
      ...Object.entries(fixed).map(([name, value]) => ({ name, description: 'set by the plugin', value })),
      ...[...COMMON_SETTABLE, ...SETTABLE[driver]].map((name) => ({
        name,
        description: 'docker plugin set; empty means the default',
        value: '',
        settable: ['value'],
      })),
      {
        name: 'NODE_OPTIONS',
        description: "node's heap sizing (docs/operations.md); docker plugin set to change it",
        value: NODE_OPTIONS,
        settable: ['value'],
      },
    ],
  };
}
