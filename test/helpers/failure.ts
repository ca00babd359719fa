import { expect } from 'vitest';
import { StowageError } from '../../src/base/errors.js';

/** The StowageError `p` rejects with; fails the test when it resolves or rejects with anything else. */
export async function failure(p: Promise<unknown>): Promise<StowageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a StowageError').toBeInstanceOf(StowageError);
  return err as StowageError;
}
