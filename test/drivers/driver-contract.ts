import { describe, expect, it } from 'vitest';
import type { Driver, ProvisionResult, VolumeInput } from '../../src/core/driver.js';
import type { VolumeRecord } from '../../src/state/store.js';
import { volumeInput, volumeRecord } from '../helpers/driver-context.js';
import { failure } from '../helpers/failure.js';

/** One driver, ready to provision, with a view of the storage it manages. */
export interface DriverSubject {
  driver: Driver;
  /** Options (as a user gives them) under which provision works in this setup. */
  options: Record<string, string>;
  /** What exists in the driver's storage now (image files, share directories, cloud ids), sorted. */
  storage(): Promise<string[]>;
  cleanup(): Promise<void>;
}

/**
 * The behaviours every driver promises the VolumeManager, whatever its storage: the driver
 * counterpart of test/state/store-contract.ts. `open` returns a fresh subject with no volumes.
 */
export function driverContract(name: string, open: () => Promise<DriverSubject>): void {
  describe(`Driver contract: ${name}`, () => {
    /**
     * Provisions `volume` as the VolumeManager's Create does, keeping what the driver noted;
     * with what an earlier attempt noted, as a resumed Create.
     */
    async function provision(
      s: DriverSubject,
      volume: string,
      noted?: Record<string, unknown>,
    ): Promise<{ result: ProvisionResult; noted: Record<string, unknown>; input: VolumeInput }> {
      const input = volumeInput(s.driver, volume, s.options, {
        createdAt: '2026-01-02T03:04:05.000Z',
        ...(noted ? { notes: { ...noted } } : {}),
      });
      const result = await s.driver.provision(input);
      return { result, noted: input.notes, input };
    }

    function record(
      input: VolumeInput,
      over: Pick<VolumeRecord, 'fields' | 'status'> & Partial<VolumeRecord>,
    ): VolumeRecord {
      return volumeRecord(name, input, over);
    }

    it('parseOptions refuses an unknown option, naming it and listing the valid ones', async () => {
      const s = await open();
      try {
        const err = await failure(Promise.resolve().then(() => s.driver.parseOptions({ bogusOption: '1' })));
        expect(err.code).toBe('INVALID_ARGUMENT');
        expect(err.message).toContain(`unknown option "bogusOption" for driver ${name}; valid options: `);
        for (const option of Object.keys(s.driver.optionSpecs)) expect(err.message).toContain(option);
        expect(await s.storage()).toEqual([]);
      } finally {
        await s.cleanup();
      }
    });

    it('provision is idempotent: a second attempt with what the first noted makes nothing new', async () => {
      const s = await open();
      try {
        const first = await provision(s, 'c1');
        const made = await s.storage();
        expect(made.length).toBeGreaterThan(0);
        expect(first.result.adopted).toBe(false);
        const again = await provision(s, 'c1', first.noted);
        expect(again.result).toEqual(first.result);
        expect(await s.storage()).toEqual(made);
      } finally {
        await s.cleanup();
      }
    });

    it('abandon after a fresh provision leaves nothing, and again is success', async () => {
      const s = await open();
      try {
        const { noted, input } = await provision(s, 'c2');
        // A Create killed after provision: the record is still `creating`, with what was noted.
        const creating = record(input, { status: 'creating', fields: noted });
        await s.driver.abandon(creating);
        expect(await s.storage()).toEqual([]);
        await s.driver.abandon(creating);
        expect(await s.storage()).toEqual([]);
      } finally {
        await s.cleanup();
      }
    });

    it('destroy of storage that is already gone is success', async () => {
      const s = await open();
      try {
        const { result, noted, input } = await provision(s, 'c3');
        await s.driver.abandon(record(input, { status: 'creating', fields: noted }));
        expect(await s.storage()).toEqual([]);
        for (const removePolicy of ['delete', result.removePolicy] as const) {
          await s.driver.destroy(
            record(input, { status: 'ready', fields: result.fields, removePolicy, adopted: result.adopted }),
          );
        }
        expect(await s.storage()).toEqual([]);
      } finally {
        await s.cleanup();
      }
    });

    it('describe never throws: a ready volume, a Create with nothing noted, fields of the wrong type', async () => {
      const s = await open();
      try {
        const { result, input } = await provision(s, 'c4');
        const ready = record(input, {
          status: 'ready',
          fields: result.fields,
          removePolicy: result.removePolicy,
        });
        expect(typeof s.driver.describe(ready)).toBe('object');
        expect(typeof s.driver.describe(record(input, { status: 'creating', fields: {} }))).toBe('object');
        const odd = Object.fromEntries(Object.keys(result.fields).map((k) => [k, 42]));
        expect(typeof s.driver.describe(record(input, { status: 'ready', fields: odd, options: {} }))).toBe(
          'object',
        );
      } finally {
        await s.cleanup();
      }
    });
  });
}
