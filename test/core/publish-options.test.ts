import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { podMountId } from '../../src/core/mount-ids.js';
import { failure } from '../helpers/failure.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * What publish takes besides the path (CSI's needs, open to every door): a repeat asking for the
 * other access is refused, bind flags from a short list, a group for the volume's root directory;
 * and unpublish removing the target directory it made. Over the fake kernel and SQLite.
 */

const POD = podMountId('0b7c1d54-5f3a-4e8b-9c61-3a2f1e0d9c8b', 'data');

let t: TestRuntime;

beforeEach(async () => {
  t = await createTestRuntime();
  await t.manager.create('local', 'v1', {});
});

afterEach(async () => {
  await t.cleanup();
});

const target = () => join(t.dir, 'kubelet', 'pods', 'p1', 'volumes', 'x', 'data');

describe('publish options', () => {
  it('refuses with CONFLICT a repeat that asks for the other access, and leaves the bind as it is', async () => {
    await t.manager.publish({ volume: 'v1', id: POD, target: target(), readOnly: true });
    const err = await failure(t.manager.publish({ volume: 'v1', id: POD, target: target() }));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toBe(
      `volume v1 is already published at ${target()} read-only; unpublish it first to publish it there read-write`,
    );
    expect(t.mounter.table.get(target())).toMatchObject({ options: ['bind', 'ro'] });
    await t.manager.publish({ volume: 'v1', id: POD, target: target(), readOnly: true }); // the same: success
  });

  it('puts allowed flags on the bind and refuses others before touching anything', async () => {
    const err = await failure(
      t.manager.publish({ volume: 'v1', id: POD, target: target(), flags: ['noexec', 'sync'] }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('mount flag sync cannot be applied');
    expect(t.mounter.count('mount')).toBe(0);
    await t.manager.publish({
      volume: 'v1',
      id: POD,
      target: target(),
      flags: ['noexec', 'nodev', 'noexec'],
    });
    expect(t.mounter.table.get(target())).toMatchObject({ options: ['bind', 'noexec', 'nodev'] });
  });

  it('gives the root directory of the volume to a group; refuses a group that is not a gid', async () => {
    expect(
      (await failure(t.manager.publish({ volume: 'v1', id: POD, target: target(), group: -1 }))).code,
    ).toBe('INVALID_ARGUMENT');
    await t.manager.publish({ volume: 'v1', id: POD, target: target(), group: 1234 });
    expect(t.files.groups.get(t.manager.mountpointFor('v1'))).toBe(1234);
  });
});

describe('volume health', () => {
  it('is NOT_FOUND for ids that do not count the volume here', async () => {
    await t.manager.publish({ volume: 'v1', id: POD, target: target() });
    expect((await failure(t.manager.healthAt('local', 'v1', target(), ['csi:other']))).code).toBe(
      'NOT_FOUND',
    );
    expect((await t.manager.healthAt('local', 'v1', target(), [POD])).abnormal).toBe(false);
  });
});
