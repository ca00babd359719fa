import { StowageError } from '../src/base/errors.js';
import { FLEX_DRIVERS, initCapabilities, VENDOR } from './capabilities.js';
import { isJson, parseFlexOptions } from './options.js';
import { type FlexReply, failureOf, notSupported, success } from './reply.js';
import type { FlexBundle } from './runtime.js';

/** Calls of attachable drivers only (the controller-manager's and kubelet's device steps). */
const ATTACH_CALLS = new Set([
  'attach',
  'isattached',
  'detach',
  'waitforattach',
  'mountdevice',
  'unmountdevice',
]);
/** Only drivers that tell kubelet `requiresFSResize` grow volumes; the others answer Not supported. */
const RESIZE_CALLS = new Set(['expandvolume', 'expandfs']);
/** Calls that need the store; only init and getvolumename are answered without it. */
const STORE_CALLS = new Set([...ATTACH_CALLS, ...RESIZE_CALLS, 'mount', 'unmount']);

/**
 * One kubelet (or controller-manager) call of the flexvolume driver `driver`, answered with the
 * reply object. Never throws: every failure is a Failure reply with a message for the user.
 * `init` and `getvolumename` load neither the config nor the store: kubelet runs them often.
 */
export async function flexMain(
  driver: string | undefined,
  args: string[],
  bundle?: FlexBundle,
): Promise<FlexReply> {
  const traits = driver === undefined ? undefined : FLEX_DRIVERS[driver];
  if (!driver || !traits) {
    return failureOf(
      new StowageError(
        'UNKNOWN_DRIVER',
        `unknown stowage flexvolume driver ${JSON.stringify(driver ?? '')}; install it with \`stowage flexvolume install\``,
      ),
    );
  }
  const [call, ...rest] = args;
  try {
    if (!call) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `no call given: kubelet runs ${VENDOR}~${driver}/${driver} init|getvolumename|mount|unmount|...`,
      );
    }
    if (call === 'init') return success({ capabilities: initCapabilities(traits) });
    if (call === 'getvolumename') {
      return success({ volumeName: parseFlexOptions(rest.find(isJson), traits).name });
    }
    if (
      !STORE_CALLS.has(call) ||
      (!traits.attach && ATTACH_CALLS.has(call)) ||
      (!traits.requiresFSResize && RESIZE_CALLS.has(call))
    ) {
      return notSupported(`${VENDOR}/${driver} does not implement ${call}`);
    }
    const [{ runCall }, { flexConfig }] = await Promise.all([import('./calls.js'), import('./runtime.js')]);
    const config = await flexConfig(driver, bundle);
    const ctx = {
      driver,
      traits,
      config,
      ...(bundle ? { installDir: bundle.dir } : {}),
      ...(bundle?.exitsAfter ? { exitsAfter: true } : {}),
    };
    return await withDeadline(
      runCall(ctx, call, rest),
      config.flexvolume.callTimeoutMs,
      `${VENDOR}/${driver} ${call}`,
    );
  } catch (err) {
    return failureOf(err);
  }
}

/**
 * kubelet waits forever for most calls; a mount on a dead server would too. Past the deadline the
 * reply says so and the process exits (its children were bounded by their own deadlines).
 */
async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new StowageError(
            'TIMEOUT',
            `${what} did not finish within ${Math.round(ms / 1000)} s; kubelet retries it and the retry picks up where this one stopped (raise flexvolume.callTimeoutMs if the storage is that slow)`,
          ),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
