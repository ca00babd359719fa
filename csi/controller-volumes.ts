import type { CsiContext } from './context.js';
import type { ControllerPart } from './plugin.js';

/** Volumes on the controller side: create, delete, publish (attach), list, validate, expand. */
export function controllerVolumes(_ctx: CsiContext): ControllerPart {
  return { rpcs: {}, capabilities: [] };
}
