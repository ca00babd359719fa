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
  /**
   * Values this section reads from variables other than its STOWAGE_* ones: the names an older
   * system's stacks use for the same settings (Rancher's NFS stack for nfs), so they work unchanged.
   */
  fromEnvironment?(get: (name: string) => string | undefined): SectionSetting[];
}

/** A value (or a refusal) one variable gives one key of a section (`key` is inside the section). */
export interface SectionSetting {
  key: string[];
  source: string;
  value?: unknown;
  error?: string;
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
type FromEnvironment = Pick<ConfigSection, 'fromEnvironment'>;

export function configSection<S extends z.ZodType, R>(
  section: {
    schema(kit: ConfigKit): S;
    resolve(parsed: z.output<S>, base: ConfigBase): R;
  } & FromEnvironment,
): ConfigSection<S, R>;
export function configSection<S extends z.ZodType>(
  section: { schema(kit: ConfigKit): S } & FromEnvironment,
): ConfigSection<S, z.output<S>>;
export function configSection(
  section: {
    schema(kit: ConfigKit): z.ZodType;
    resolve?(parsed: unknown, base: ConfigBase): unknown;
  } & FromEnvironment,
): ConfigSection {
  return {
    schema: section.schema,
    resolve: section.resolve ?? ((parsed) => parsed),
    ...(section.fromEnvironment ? { fromEnvironment: section.fromEnvironment } : {}),
  };
}
