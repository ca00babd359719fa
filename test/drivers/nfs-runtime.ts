import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * The nfs driver's test composition: createTestRuntime (the real VolumeManager and store over the
 * fake kernel) with the local and nfs drivers, the daemon's default server `nfs1` and share
 * `/exports`. The "server" is a local directory that the fake mounter reaches for `nfs1`
 * (FakeMounter.nfsServers), and the fake file operations through the staging mount.
 */

export interface NfsRuntime {
  t: TestRuntime;
  /** The fake server's filesystem root. */
  server: string;
  /** Its /exports (the share). */
  exportsDir: string;
}

/** `nfs` is the daemon's nfs config over the defaults above (e.g. `{ server: undefined }`). */
export async function setupNfs(nfs: Record<string, unknown> = {}): Promise<NfsRuntime> {
  const t = await createTestRuntime({
    flags: { drivers: ['local', 'nfs'], nfs: { server: 'nfs1', share: '/exports', ...nfs } },
  });
  const server = join(t.dir, 'server');
  const exportsDir = join(server, 'exports');
  await mkdir(exportsDir, { recursive: true });
  t.mounter.nfsServers.set('nfs1', server);
  return { t, server, exportsDir };
}
