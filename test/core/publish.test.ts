import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { podMountId } from '../../src/core/mount-ids.js';
import { failure } from '../helpers/failure.js';
import { createTestRuntime, TEST_HOST, type TestRuntime } from '../helpers/runtime.js';

/**
 * publish/unpublish: a volume shown at a path another party owns (kubelet's pod directories) as a
 * bind mount of its mountpoint, counted like a Docker mount, under the volume's lock and the intent
 * journal, and settled by reconcile after a crash at any step. Over the fake kernel and SQLite.
 */

const DOCKER = `d0${'0'.repeat(62)}`;
const POD = podMountId('0b7c1d54-5f3a-4e8b-9c61-3a2f1e0d9c8b', 'data');
const POD_2 = podMountId('11111111-2222-4333-8444-555555555555', 'data');

let t: TestRuntime;

beforeEach(async () => {
  t = await createTestRuntime();
  await t.manager.create('local', 'v1', {});
});

afterEach(async () => {
  await t.cleanup();
});

function podDir(n = 1): string {
  return join(t.dir, 'kubelet', 'pods', `p${n}`, 'volumes', 'stowage~local', 'data');
}

function mountpoint(): string {
  return t.manager.mountpointFor('v1');
}

/** Something mounted at `target` that stowage did not make (an NFS export of a fake server). */
async function foreignMount(target: string, source: string): Promise<void> {
  t.mounter.nfsServers.set('srv', t.dir);
  await mkdir(target, { recursive: true });
  await t.mounter.mount(source, target, { fsType: 'nfs' });
}

/** The intent a publish or unpublish of POD at podDir() leaves open when the process dies. */
async function openIntent(op: 'publish' | 'unpublish'): Promise<void> {
  await t.store.beginIntent({ volume: 'v1', host: TEST_HOST, op, details: { id: POD, target: podDir() } });
}

async function refs(): Promise<Record<string, number>> {
  return (await t.store.getMounts('v1')).find((m) => m.host === TEST_HOST)?.refs ?? {};
}

describe('publish and unpublish', () => {
  it('mounts the volume once, binds it at the target, counts the id; a retry changes nothing', async () => {
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir(), readOnly: true });
    expect(t.mounter.table.get(podDir())).toMatchObject({ options: ['bind', 'ro'] });
    expect(await t.mounter.isMountPoint(mountpoint())).toBe(true);
    expect(await refs()).toEqual({ [POD]: 1 });
    // kubelet retries a call whose reply it lost: nothing is counted or mounted twice.
    const mounts = t.mounter.count('mount');
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir(), readOnly: true });
    expect(t.mounter.count('mount')).toBe(mounts);
    expect(await refs()).toEqual({ [POD]: 1 });
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it('shares the mount with Docker users: unpublishing the pod leaves the container its volume', async () => {
    await t.manager.mount('local', 'v1', DOCKER);
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() });
    expect(await refs()).toEqual({ [DOCKER]: 1, [POD]: 1 });
    await t.manager.unpublish(POD, podDir());
    expect(t.mounter.table.has(podDir())).toBe(false);
    expect(await t.mounter.isMountPoint(mountpoint())).toBe(true);
    expect(await refs()).toEqual({ [DOCKER]: 1 });
    await t.manager.unmount('local', 'v1', DOCKER);
    expect(await t.store.getMounts('v1')).toEqual([]);
  });

  it('the last unpublish unmounts the volume and detaches its loop device; again is success', async () => {
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() });
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD_2, target: podDir(2) });
    await t.manager.unpublish(POD, podDir());
    expect(await refs()).toEqual({ [POD_2]: 1 });
    await t.manager.unpublish(POD_2, podDir(2));
    expect(t.mounter.table.size).toBe(0);
    expect(await t.store.getMounts('v1')).toEqual([]);
    expect(await t.store.getAttachments('v1')).toEqual([]);
    await t.manager.unpublish(POD_2, podDir(2));
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it('refuses a target that is already a mount point it did not make, and changes nothing', async () => {
    await foreignMount(podDir(), 'srv:/somewhere');
    const err = await failure(
      t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() }),
    );
    expect(err.code).toBe('IN_USE');
    expect(err.message).toBe(
      `${podDir()} is already a mount point that stowage did not make for ${POD}; unmount it, then try again`,
    );
    expect(await t.store.getMounts('v1')).toEqual([]);
    expect(t.mounter.table.get(podDir())?.source).toBe('srv:/somewhere');
  });

  it('a bind that fails releases the count it took (the volume is unmounted again)', async () => {
    // A file where the target directory should be: making the directory fails after the mount.
    await mkdir(dirname(podDir()), { recursive: true });
    await writeFile(podDir(), '');
    const err = await failure(
      t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() }),
    );
    expect(err.message).toContain(`publish of volume v1 at ${podDir()}`);
    expect(await t.store.getMounts('v1')).toEqual([]);
    expect(t.mounter.table.size).toBe(0);
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it('a bind that fails leaves the other users counted', async () => {
    await t.manager.mount('local', 'v1', DOCKER);
    t.mounter.failNext('mount', new Error('mount: permission denied'));
    await failure(t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() }));
    expect(await refs()).toEqual({ [DOCKER]: 1 });
    expect(await t.mounter.isMountPoint(mountpoint())).toBe(true);
  });

  it('refuses targets that are not clean absolute paths, and unknown volumes', async () => {
    for (const bad of ['relative/dir', '/a/../etc', '']) {
      expect(
        (await failure(t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: bad }))).code,
      ).toBe('PERMISSION_DENIED');
      expect((await failure(t.manager.unpublish(POD, bad))).code).toBe('PERMISSION_DENIED');
    }
    expect(
      (await failure(t.manager.publish({ driver: 'local', volume: 'nope', id: POD, target: podDir() }))).code,
    ).toBe('NOT_FOUND');
    expect(
      (await failure(t.manager.publish({ driver: 'local', volume: 'v1', id: 'bad id', target: podDir() })))
        .code,
    ).toBe('INVALID_ARGUMENT');
    expect(await t.store.getMounts('v1')).toEqual([]);
  });

  it('unpublish of a path it never published unmounts whatever is there and succeeds', async () => {
    await foreignMount(podDir(), 'srv:/leftover');
    await t.manager.unpublish(POD, podDir());
    expect(t.mounter.table.has(podDir())).toBe(false);
  });
});

describe('reconcile after a crash inside publish or unpublish', () => {
  it('releases a count whose bind was never made (crash between the two)', async () => {
    await t.manager.mount('local', 'v1', POD); // the count publish takes first
    await openIntent('publish');
    const report = await t.manager.reconcile();
    expect(report.actions).toContain(
      `interrupted publish of v1 at ${podDir()}: its count without a bind released`,
    );
    expect(await t.store.getMounts('v1')).toEqual([]);
    expect(t.mounter.table.size).toBe(0);
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
    // kubelet's retry publishes afresh.
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() });
    expect(await refs()).toEqual({ [POD]: 1 });
  });

  it('keeps a publish that finished but was not recorded as ended', async () => {
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() });
    await openIntent('publish');
    const report = await t.manager.reconcile();
    expect(report.actions).toContain(`interrupted publish of v1 at ${podDir()}: published; kept`);
    expect(await refs()).toEqual({ [POD]: 1 });
    expect(t.mounter.table.has(podDir())).toBe(true);
    expect(await t.store.listIntents(TEST_HOST)).toEqual([]);
  });

  it('finishes an unpublish that began: the bind goes, then the count (and the volume with it)', async () => {
    await t.manager.mount('local', 'v1', DOCKER);
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() });
    await openIntent('unpublish');
    const report = await t.manager.reconcile();
    expect(report.actions).toContain(`interrupted unpublish of v1 at ${podDir()}: finished`);
    expect(t.mounter.table.has(podDir())).toBe(false);
    expect(await refs()).toEqual({ [DOCKER]: 1 });
    expect(await t.mounter.isMountPoint(mountpoint())).toBe(true);
  });

  it('finishes an unpublish that had unbound already (crash before the count was released)', async () => {
    await t.manager.publish({ driver: 'local', volume: 'v1', id: POD, target: podDir() });
    await t.mounter.unmount(podDir());
    await openIntent('unpublish');
    await t.manager.reconcile();
    expect(await t.store.getMounts('v1')).toEqual([]);
    expect(t.mounter.table.size).toBe(0);
  });
});
