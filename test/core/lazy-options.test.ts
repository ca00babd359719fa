import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { EBS_OPTION_SPECS } from '../../drivers/ebs/options.js';
import { EFS_OPTION_SPECS } from '../../drivers/efs/options.js';
import { LOCAL_OPTION_SPECS } from '../../drivers/local/options.js';
import { NFS_OPTION_SPECS } from '../../drivers/nfs/options.js';
import { isStowageError } from '../../src/base/errors.js';
import { lazyOptionSpecs, type OptionSpecs, parseOptions } from '../../src/core/options.js';

/**
 * Option schemas are built when an option is first parsed, not when a driver's module loads: the
 * flexvolume executable loads one driver per call, and most of its calls (unmount, detach) parse
 * no option. Built late, they parse exactly as built up front.
 */

describe('lazyOptionSpecs', () => {
  it('builds a schema the first time it is read, once', () => {
    const built: string[] = [];
    const noting = (name: string, schema: z.ZodType) => () => {
      built.push(name);
      return schema;
    };
    const specs = lazyOptionSpecs({
      size: { schema: noting('size', z.string().regex(/^\d+$/)), help: 'a size' },
      mode: { aliases: ['m'], schema: noting('mode', z.enum(['a', 'b'])), help: 'a mode' },
    });
    expect(built).toEqual([]);
    expect(Object.keys(specs)).toEqual(['size', 'mode']);
    expect(specs.mode?.aliases).toEqual(['m']);
    parseOptions('d', specs, { size: '1' });
    parseOptions('d', specs, { size: '2', m: 'a' });
    expect(built).toEqual(['size', 'mode']);
  });

  it('parses and refuses exactly as the same specs built up front', () => {
    const eager: OptionSpecs = {
      size: { schema: z.string().regex(/^\d+$/, { message: 'must be digits' }).transform(Number), help: 'n' },
      mode: { aliases: ['m'], schema: z.enum(['a', 'b']), help: 'a or b' },
    };
    const lazy = lazyOptionSpecs({
      size: {
        schema: () => z.string().regex(/^\d+$/, { message: 'must be digits' }).transform(Number),
        help: 'n',
      },
      mode: { aliases: ['m'], schema: () => z.enum(['a', 'b']), help: 'a or b' },
    });
    const outcome = (specs: OptionSpecs, raw: Record<string, string>) => {
      try {
        return parseOptions('d', specs, raw, { mode: 'a' });
      } catch (err) {
        expect(isStowageError(err, 'INVALID_ARGUMENT')).toBe(true);
        return (err as Error).message;
      }
    };
    const inputs: Record<string, string>[] = [
      { size: '12' },
      { size: 'x' },
      { M: 'b' },
      { m: 'c' },
      { other: '1' },
      {},
    ];
    for (const raw of inputs) {
      expect(outcome(lazy, raw)).toEqual(outcome(eager, raw));
    }
  });
});

describe("the built-in drivers' option specs", () => {
  const drivers: [string, OptionSpecs][] = [
    ['local', LOCAL_OPTION_SPECS],
    ['nfs', NFS_OPTION_SPECS],
    ['efs', EFS_OPTION_SPECS],
    ['ebs', EBS_OPTION_SPECS],
  ];

  it.each(drivers)('%s: no option schema is built until read', (_name, specs) => {
    for (const [option, spec] of Object.entries(specs)) {
      const own = Object.getOwnPropertyDescriptor(spec, 'schema');
      expect(own, option).toBeDefined();
      // Either built on first read (an accessor), or a shared schema that builds itself on first parse.
      const lazy = own?.get !== undefined || (own?.value as z.ZodType | undefined)?._zod.def.type === 'lazy';
      expect(lazy, option).toBe(true);
    }
  });
});
