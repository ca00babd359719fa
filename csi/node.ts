import type { CsiContext } from './context.js';
import type { Rpcs } from './plugin.js';
import type { NodeMethods } from './proto/messages.js';

/** The node service: stage, publish, their undoing, stats, expansion, the node's identity. */
export function nodeService(_ctx: CsiContext): Partial<Rpcs<NodeMethods>> {
  return {};
}
