import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createTestRuntime } from '../helpers/runtime.js';

it('a Remove the driver refused (nothing deleted) leaves the volume usable', async () => {
  const t = await createTestRuntime();
  try {
    await t.manager.create('local', 'v1', {});
    const img = join(t.config.local.imageDir, 'v1.img');
    // Someone else attached the image (losetup by hand): destroy refuses and deletes nothing.
    const stray = await t.loop.attach(img);
    await expect(t.manager.remove('local', 'v1')).rejects.toThrow(
      `image ${img} is still attached as ${stray}; nothing was deleted`,
    );
    await t.loop.detach(stray);

    expect((await t.store.getVolume('v1'))?.status).toBe('ready');
    expect(await t.store.listIntents('test-host')).toEqual([]);
    await expect(t.manager.mount('local', 'v1', 'a'.repeat(64))).resolves.toBe(
      join(t.config.mountRoot, 'v1'),
    );
  } finally {
    await t.cleanup();
  }
});
