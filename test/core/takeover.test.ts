import { describe, expect, it } from 'vitest';
import { hostHolder, refuseTakeOverUnlessAllowed } from '../../src/core/takeover.js';
import type { MountRecord, VolumeRecord } from '../../src/state/store.js';
import { failure } from '../helpers/failure.js';

/**
 * The one take-over (preempt) rule the Attacher and the EBS driver share: its decisions and the
 * exact refusals both doors' tests expect.
 */

const vol = (preempt: boolean): VolumeRecord => ({
  name: 'v1',
  driver: 'ebs',
  options: { preempt },
  givenOptions: preempt ? ['preempt'] : [],
  removePolicy: 'retain',
  adopted: false,
  createdAt: '2024-05-01T10:00:00.000Z',
  status: 'ready',
  fields: {},
});

const mount = (refs: Record<string, number>): MountRecord => ({
  volume: 'v1',
  host: 'node-b',
  mountpoint: '/m',
  refs,
  state: 'mounted',
  updatedAt: '2024-05-01T10:00:00.000Z',
});

const refusal = async (v: VolumeRecord, h: Parameters<typeof refuseTakeOverUnlessAllowed>[1]) => {
  const err = await failure((async () => refuseTakeOverUnlessAllowed(v, h))());
  expect(err.code).toBe('IN_USE');
  return err.message;
};

describe('refuseTakeOverUnlessAllowed', () => {
  it('lets preempt take an unused volume', () => {
    expect(() => refuseTakeOverUnlessAllowed(vol(true), hostHolder('host node-b', []))).not.toThrow();
    expect(() =>
      refuseTakeOverUnlessAllowed(vol(true), {
        label: 'instance i-1 (host node-b)',
        activeMounts: 0,
        use: 'unused',
      }),
    ).not.toThrow();
  });

  it('refuses without preempt, whatever the use, saying how to release or take it', async () => {
    expect(await refusal(vol(false), hostHolder('host node-b', []))).toBe(
      'volume v1 is attached to host node-b; release it there, or create the volume with preempt=true to take it over',
    );
    expect(
      await refusal(vol(false), { label: 'instance i-1 (host node-b)', activeMounts: 0, use: 'unused' }),
    ).toBe(
      'volume v1 is attached to instance i-1 (host node-b) with 0 active mounts; release it there, or create the volume with preempt=true to take it over',
    );
  });

  it('refuses preempt while the holder uses it, counting its mounts', async () => {
    expect(await refusal(vol(true), hostHolder('host node-b', [mount({ c1: 1 })]))).toBe(
      'volume v1 is attached to host node-b with 1 active mount; preempt takes a volume only when nobody uses it',
    );
    // An unmount that did not finish (0 refs) still counts as use for a host's records.
    expect(await refusal(vol(true), hostHolder('host node-b', [mount({})]))).toBe(
      'volume v1 is attached to host node-b with 0 active mounts; preempt takes a volume only when nobody uses it',
    );
  });

  it('refuses preempt when nothing proves the holder does not use it', async () => {
    expect(await refusal(vol(true), { label: 'instance i-1 (not a stowage host)', use: 'unknown' })).toBe(
      'volume v1 is attached to instance i-1 (not a stowage host); nothing proves it is unused there, so it is not force-detached',
    );
  });
});
