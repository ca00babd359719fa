import { StowageError, toStowageError } from '../src/base/errors.js';
import { type CsiContext, pluginName } from './context.js';
import { unary } from './handler.js';
import type { Handlers } from './proto/load.js';
import type { IdentityMethods, PluginCapability } from './proto/messages.js';

/** How long Probe waits for the store before it calls the plugin unhealthy. */
const PROBE_STORE_DEADLINE_MS = 5000;

/** Identity: who this plugin is, what it offers, and whether it is healthy (the liveness probe). */
export function identityService(ctx: CsiContext): Handlers<IdentityMethods> {
  const log = ctx.log.child({ service: 'identity' });
  return {
    GetPluginInfo: unary(
      'GetPluginInfo',
      async () => ({
        name: pluginName(ctx.driver),
        vendorVersion: ctx.version,
        manifest: { driver: ctx.driver },
      }),
      log,
    ),
    GetPluginCapabilities: unary(
      'GetPluginCapabilities',
      async () => ({ capabilities: pluginCapabilities(ctx) }),
      log,
    ),
    Probe: unary(
      'Probe',
      async () => {
        await probeStore(ctx);
        return { ready: { value: ctx.ready() } };
      },
      log,
    ),
  };
}

export function pluginCapabilities(ctx: CsiContext): PluginCapability[] {
  const caps: PluginCapability[] = [{ service: { type: 'CONTROLLER_SERVICE' } }];
  if (ctx.traits.zonal || ctx.traits.hostLocal) {
    caps.push({ service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } });
  }
  // A block driver's volumes grow while mounted (the device, then the filesystem on the node).
  if (ctx.traits.requiresFSResize) caps.push({ volumeExpansion: { type: 'ONLINE' } });
  return caps;
}

/**
 * A store that cannot answer makes the plugin unhealthy (an error, so the liveness probe restarts
 * it if it stays so); a plugin still registering and reconciling is healthy but not ready.
 */
async function probeStore(ctx: CsiContext): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      ctx.checkStore(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new StowageError(
                'UNAVAILABLE',
                `the metadata store did not answer within ${PROBE_STORE_DEADLINE_MS} ms`,
              ),
            ),
          PROBE_STORE_DEADLINE_MS,
        );
      }),
    ]);
  } catch (err) {
    const e = toStowageError(err, 'metadata store');
    throw new StowageError(
      'UNAVAILABLE',
      `not healthy: the metadata store cannot be reached (${e.message}); check the state setting and the store`,
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
  }
}
