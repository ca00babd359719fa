import type { z } from 'zod';
import type { ConfigKit } from './config-kit.js';

/**
 * A driver's section of the config, named by the driver's catalog entry (drivers/catalog.ts), from
 * which src/config.ts composes the whole schema: `schema` checks the section at start (its keys get
 * STOWAGE_* variables like every other key); `resolve` fills the defaults that depend on the rest
 * of the config (a directory under dataDir), so that `stowage config` shows them.
 *
 * This module imports zod's types only (see ConfigKit): the catalog loads it at every flexvolume
 * `init` probe.
 */
export interface ConfigSection<S extends z.ZodType = z.ZodType, R = unknown> {
  schema(kit: ConfigKit): S;
  resolve(parsed: z.output<S>, base: ConfigBase): R;
}

/** What a section's defaults may depend on. */
export interface ConfigBase {
  dataDir: string;
}

/** The section's value as its driver receives it. */
export type SectionValue<C> = C extends ConfigSection<z.ZodType, infer R> ? R : never;

/** The section's schema. */
export type SectionSchema<C> = C extends ConfigSection<infer S, unknown> ? S : never;

/** Declares a driver's config section; without `resolve`, the section is used as parsed. */
export function configSection<S extends z.ZodType, R>(section: {
  schema(kit: ConfigKit): S;
  resolve(parsed: z.output<S>, base: ConfigBase): R;
}): ConfigSection<S, R>;
export function configSection<S extends z.ZodType>(section: {
  schema(kit: ConfigKit): S;
}): ConfigSection<S, z.output<S>>;
export function configSection(section: {
  schema(kit: ConfigKit): z.ZodType;
  resolve?(parsed: unknown, base: ConfigBase): unknown;
}): ConfigSection {
  return { schema: section.schema, resolve: section.resolve ?? ((parsed) => parsed) };
}
