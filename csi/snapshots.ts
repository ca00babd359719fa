import type { CsiContext } from './context.js';
import type { ControllerPart } from './plugin.js';

/** Snapshots on the controller side (ebs). */
export function controllerSnapshots(_ctx: CsiContext): ControllerPart {
  return { rpcs: {}, capabilities: [] };
}
