import { readdir } from 'node:fs/promises';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';
import { until } from '../helpers/deadline.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { driverContract } from './driver-contract.js';
import { setupEbs } from './ebs-setup.js';
import { FS, SUBNET_A, setupEfs } from './efs-runtime.js';
import { setupNfs } from './nfs-runtime.js';

useTestAwsCredentials();

/** Lists `dir` (sorted); a directory not made yet holds nothing. */
async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [])).sort();
}

// local: image files in the image directory, over the fake kernel (loop devices and mkfs are fakes).
driverContract('local', async () => {
  const t = await createTestRuntime();
  return {
    driver: t.runtime.registry.get('local'),
    options: { size: '64M' },
    storage: () => entries(t.config.local.imageDir),
    cleanup: () => t.cleanup(),
  };
});

// nfs: directories in the share of a fake server (a local directory the fake mounter reaches).
driverContract('nfs', async () => {
  const { t, exportsDir } = await setupNfs();
  return {
    driver: t.runtime.registry.get('nfs'),
    options: { onRemove: 'delete' },
    storage: () => entries(exportsDir),
    cleanup: () => t.cleanup(),
  };
});

// efs: the real SDK against the fake EFS endpoint (efs-runtime.ts); storage is the file systems
// other than the configured one, their access points, and the directories in its root.
driverContract('efs', async () => {
  const t = await setupEfs({ fileSystem: [SUBNET_A] });
  return {
    driver: t.runtime.registry.get('efs'),
    options: { onRemove: 'delete' },
    storage: async () =>
      [
        ...t.efs.fileSystems.filter((f) => f.fileSystemId !== FS).map((f) => f.fileSystemId),
        ...t.efs.accessPoints.map((a) => a.accessPointId),
        ...(await entries(t.root)),
      ].sort(),
    cleanup: () => t.cleanup(),
  };
});

// ebs: the driver on its own (ebs-setup.ts) with the real SDK against the fake EC2 endpoint; storage
// is the EBS volumes EC2 has, once the ones it is deleting (20 ms here) are gone.
driverContract('ebs', async () => {
  const s = await setupEbs({ deleteMs: 20 });
  return {
    driver: s.driver().driver,
    options: { size: '1' },
    storage: async () => {
      await until('EC2 to finish deleting', async () =>
        s.fake.volumes.some((v) => v.state === 'deleting') ? undefined : true,
      );
      return s.fake.volumes.map((v) => v.volumeId).sort();
    },
    cleanup: () => s.cleanup(),
  };
});
