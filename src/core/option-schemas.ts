import * as z from 'zod';
import { parseDuration } from '../base/duration.js';
import { lazySchema, type OptionSpec } from './options.js';

/**
 * Option value schemas that more than one driver uses. Option values arrive as strings (Docker's
 * `-o`, Kubernetes' options); defaults from config may arrive as arrays. The shared ones are built
 * on first use (lazySchema): a driver that never parses options in a process builds none.
 */

/** `true/false`, `1/0`, `yes/no`. */
export const boolOption = lazySchema(() =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
    .transform((v) => ['true', '1', 'yes'].includes(v)),
);

/** A uid or gid. */
export const numericIdOption = lazySchema(() =>
  z
    .string()
    .regex(/^\d{1,10}$/, { message: 'must be a numeric id' })
    .transform(Number),
);

/** A comma-separated list (or an array, from config) whose every item matches `re`. */
export function listOption(re: RegExp, what: string) {
  return z.union([z.string(), z.array(z.string())]).transform((v, ctx) => {
    const items = (Array.isArray(v) ? v : v.split(',')).map((x) => x.trim()).filter(Boolean);
    const bad = items.find((x) => !re.test(x));
    if (bad !== undefined) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(bad)} is not ${what}` });
      return z.NEVER;
    }
    return items;
  });
}

/** Mount options as `key` or `key=value`: nothing that could smuggle a second option or a path. */
export const mountOptionsOption = lazySchema(() =>
  listOption(/^[A-Za-z0-9_]+(=[A-Za-z0-9_.:/@+-]+)?$/, 'a mount option (key or key=value)'),
);

/** A duration such as `30s`, at most `maxMs`. */
export function durationOption(maxMs: number, maxText: string) {
  return z.string().refine(
    (t) => {
      try {
        return parseDuration(t) <= maxMs;
      } catch {
        return false;
      }
    },
    { message: `must be a duration up to ${maxText} such as 30s` },
  );
}

/** An absolute path on a server, without `..`; a trailing slash is dropped. */
export function remotePathOption(message: string) {
  return z
    .string()
    .regex(/^\/[A-Za-z0-9_.@+/-]*$/, { message })
    .refine((p) => !p.split('/').includes('..'), { message: 'must not contain ".."' })
    .transform((p) => (p.length > 1 ? p.replace(/\/+$/, '') : p));
}

// A path segment: what a volume name may be, so every subdirectory stays inside its share.
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** A relative path of names under a share; `{name}` stands for the volume name. */
export const subdirOption = lazySchema(() =>
  z
    .string()
    .transform((s) => s.replace(/^\/+|\/+$/g, ''))
    .refine(
      (s) => s.split('/').every((seg) => SEGMENT.test(seg.replaceAll('{name}', 'n')) && !seg.includes('..')),
      {
        message: 'must be a relative path of names ([A-Za-z0-9_.-], no ".."), may use {name}',
      },
    ),
);

/**
 * access=single-host restricts a shared-filesystem volume to one host at a time (as Rancher's
 * singleHostRW did): the core refuses a mount while another host has it mounted.
 */
export const accessOption: OptionSpec = {
  schema: lazySchema(() => z.enum(['multi-host', 'single-host'])),
  help: 'multi-host (default: any number of hosts) or single-host (one host at a time)',
};

/**
 * preempt=true lets a single-host shared-filesystem volume (access=single-host) be taken over from
 * a host that is gone (its lease in the store expired): per volume and explicit, where the config's
 * hosts.takeOverGone says it for every volume. A live host's mount is never taken.
 */
export const preemptOption: OptionSpec = {
  schema: boolOption,
  help: 'with access=single-host: take the volume over from a host that is gone (its lease expired)',
};
