import * as z from 'zod';
import { StowageError } from '../base/errors.js';

/**
 * Declarative option parsing shared by every driver: canonical names with the aliases users know
 * from other plugins, one zod schema per option, unknown keys refused with the list of valid ones.
 */
export interface OptionSpec {
  aliases?: readonly string[];
  schema: z.ZodType;
  /** One line for the README/doctor and for error messages. */
  help: string;
}

export type OptionSpecs = Record<string, OptionSpec>;

/** An option declared with a function that builds its schema (see lazyOptionSpecs). */
export interface LazyOptionSpec {
  aliases?: readonly string[];
  schema: () => z.ZodType;
  help: string;
}

/**
 * The specs with each schema built the first time it is read, then kept: a driver's module loads
 * without building any zod schema, so a call that parses no options (a flexvolume unmount, a
 * process of its own that kubelet starts per call) builds none. Parsing is the same as with the
 * schemas built up front.
 */
export function lazyOptionSpecs(specs: Record<string, LazyOptionSpec | OptionSpec>): OptionSpecs {
  // A built schema is an object, a builder a function: specs shared by drivers (access, preempt)
  // come built, with schemas that are themselves lazy (lazySchema).
  return Object.fromEntries(
    Object.entries(specs).map(([name, spec]) => [name, isLazy(spec) ? lazyOption(spec) : spec]),
  );
}

function isLazy(spec: LazyOptionSpec | OptionSpec): spec is LazyOptionSpec {
  return typeof spec.schema === 'function';
}

export function lazyOption({ schema: build, ...rest }: LazyOptionSpec): OptionSpec {
  let built: z.ZodType | undefined;
  return {
    ...rest,
    get schema() {
      built ??= build();
      return built;
    },
  };
}

/** A schema that builds `build()` the first time it parses (shared option schemas; see lazyOptionSpecs). */
export function lazySchema<T extends z.ZodType>(build: () => T): z.ZodLazy<T> {
  return z.lazy(build);
}

export interface ParsedOptions<T> {
  values: T;
  /** Canonical names the caller gave explicitly (defaults excluded); used for idempotent Create. */
  given: string[];
}

export function parseOptions<T>(
  driver: string,
  specs: OptionSpecs,
  raw: Record<string, string>,
  defaults: Partial<Record<keyof T & string, unknown>> = {},
): ParsedOptions<T> {
  const lookup = new Map<string, string>();
  for (const [canonical, spec] of Object.entries(specs)) {
    lookup.set(canonical.toLowerCase(), canonical);
    for (const alias of spec.aliases ?? []) lookup.set(alias.toLowerCase(), canonical);
  }
  const picked: Record<string, string> = {};
  const origin: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    const canonical = lookup.get(key.toLowerCase());
    if (!canonical) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `unknown option ${JSON.stringify(key)} for driver ${driver}; valid options: ${describeValid(specs)}`,
      );
    }
    if (canonical in picked) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `option ${JSON.stringify(key)} repeats ${JSON.stringify(origin[canonical])} (both mean ${canonical}); give it once`,
      );
    }
    if (typeof value !== 'string') {
      throw new StowageError('INVALID_ARGUMENT', `option ${key} must be a string value`);
    }
    picked[canonical] = value;
    origin[canonical] = key;
  }
  const values: Record<string, unknown> = {};
  for (const [canonical, spec] of Object.entries(specs)) {
    const input = canonical in picked ? picked[canonical] : defaults[canonical as keyof T & string];
    if (input === undefined) continue;
    const result = spec.schema.safeParse(input);
    if (!result.success) {
      const shown = origin[canonical] ?? canonical;
      const issue = result.error.issues[0]?.message ?? 'invalid value';
      throw new StowageError(
        'INVALID_ARGUMENT',
        `option ${shown}=${JSON.stringify(String(input))} for driver ${driver}: ${issue} (${spec.help})`,
      );
    }
    values[canonical] = result.data;
  }
  return { values: values as T, given: Object.keys(picked) };
}

/**
 * A volume's options as its driver's parseOptions made them at Create (VolumeInput and VolumeRecord
 * alike). The store keeps every driver's options as the same JSON record and cannot know their
 * shape; the driver that parsed them does. This is the one place where a driver says so.
 */
export function recordedOptions<T extends Record<string, unknown>>(volume: {
  options: Record<string, unknown>;
}): T {
  return volume.options as T;
}

function describeValid(specs: OptionSpecs): string {
  return Object.entries(specs)
    .map(([name, spec]) => (spec.aliases?.length ? `${name} (alias ${spec.aliases.join(', ')})` : name))
    .join(', ');
}

/** A zod schema for an enum given as a string option, with a message listing the choices. */
export function oneOf<const T extends readonly [string, ...string[]]>(choices: T) {
  return z.enum(choices, { message: `must be one of ${choices.join(', ')}` });
}
