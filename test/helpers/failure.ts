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

/** The StowageError `fn` throws, for synchronous calls; fails the test when it returns or throws anything else. */
export function thrown(fn: () => unknown): StowageError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a StowageError').toBeInstanceOf(StowageError);
  return err as StowageError;
}
