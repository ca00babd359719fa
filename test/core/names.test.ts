import { describe, expect, it } from 'vitest';
import { isStowageError } from '../../src/base/errors.js';
import { MAX_VOLUME_NAME_LENGTH, validateVolumeName } from '../../src/core/names.js';

/** Volume names: Docker's rule, bounded in length, always usable as one path component. */

function refusal(name: unknown): string {
  let thrown: unknown;
  try {
    validateVolumeName(name);
  } catch (err) {
    thrown = err;
  }
  expect(isStowageError(thrown, 'INVALID_ARGUMENT'), `${JSON.stringify(name)} was accepted`).toBe(true);
  return (thrown as Error).message;
}

describe('validateVolumeName', () => {
  it.each([
    'db',
    'db-data',
    'my_volume.v2',
    'A1',
    '0-start-with-digit',
    'ends.with.dot.',
    'ends-with-dash-',
    'a.b.c',
    'x'.repeat(MAX_VOLUME_NAME_LENGTH),
  ])('accepts %j', (name) => {
    expect(validateVolumeName(name)).toBe(name);
  });

  it('the limit is 128 characters', () => {
    expect(MAX_VOLUME_NAME_LENGTH).toBe(128);
    expect(validateVolumeName(`a${'b'.repeat(127)}`)).toHaveLength(128);
    expect(refusal('a'.repeat(129))).toBe('volume name is 129 characters long; the limit is 128');
  });

  it.each([
    ['a', 'one character'],
    ['a..b', '".." inside'],
    ['..', '".."'],
    ['a/b', 'a slash'],
    ['/abs', 'a leading slash'],
    ['.hidden', 'a leading "."'],
    ['-flag', 'a leading "-"'],
    ['_under', 'a leading "_"'],
    ['has space', 'a space'],
    ['tab\there', 'a tab'],
    ['line\n', 'a trailing newline'],
    ['ümlaut', 'a non-ASCII letter'],
    ['a:b', 'a colon'],
    ['a\\b', 'a backslash'],
  ])('refuses %j (%s), with the rule in the message', (name) => {
    expect(refusal(name)).toBe(
      `invalid volume name ${JSON.stringify(name)}: use 2-128 characters from [a-zA-Z0-9_.-], ` +
        'starting with a letter or digit, without ".." or "/"',
    );
  });

  it.each([[''], [undefined], [null], [42], [['db']], [{ name: 'db' }]])(
    'refuses %j as a missing name',
    (name) => {
      expect(refusal(name)).toBe('volume name is missing: give a name such as "db-data"');
    },
  );
});
