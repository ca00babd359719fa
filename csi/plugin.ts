import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { CsiContext } from './context.js';
import { controllerVolumes } from './controller-volumes.js';
import { type CallObserver, type Rpc, unary, unimplemented } from './handler.js';
import { identityService } from './identity.js';
import { nodeService } from './node.js';
import { type CsiDefinitions, loadCsi } from './proto/load.js';
import type { ControllerMethods, ControllerRpcType, NodeMethods } from './proto/messages.js';
import type { CsiMode, ServedService } from './server.js';
import { controllerSnapshots } from './snapshots.js';

/** A service's methods as plain async functions (the handler wraps them for grpc-js). */
export type Rpcs<M> = { [K in keyof M]: M[K] extends [infer Req, infer Res] ? Rpc<Req, Res> : never };

/** One part of the controller service: the RPCs it serves and the capabilities they stand for. */
export interface ControllerPart {
  rpcs: Partial<Rpcs<ControllerMethods>>;
  capabilities: ControllerRpcType[];
}

/**
 * The services of one driver's CSI plugin for a mode: Identity always (the sidecars and kubelet
 * ask every plugin), Controller for `controller`/`all`, Node for `node`/`all`. A method no part
 * serves answers UNIMPLEMENTED, and ControllerGetCapabilities lists exactly what the parts serve.
 */
export function csiServices(ctx: CsiContext, mode: CsiMode, observe?: CallObserver): ServedService[] {
  const defs: CsiDefinitions = loadCsi();
  const services: ServedService[] = [
    {
      definition: defs.identity,
      implementation: identityService(ctx) as unknown as UntypedServiceImplementation,
    },
  ];
  if (mode !== 'node') {
    const parts = [controllerVolumes(ctx), controllerSnapshots(ctx)];
    const capabilities = [...new Set(parts.flatMap((p) => p.capabilities))];
    const rpcs: Partial<Rpcs<ControllerMethods>> = Object.assign({}, ...parts.map((p) => p.rpcs));
    rpcs.ControllerGetCapabilities = async () => ({
      capabilities: capabilities.map((type) => ({ rpc: { type } })),
    });
    services.push({
      definition: defs.controller,
      implementation: wrapAll(Object.keys(defs.controller), rpcs, ctx, 'controller', observe),
    });
  }
  if (mode !== 'controller') {
    services.push({
      definition: defs.node,
      implementation: wrapAll(Object.keys(defs.node), nodeService(ctx), ctx, 'node', observe),
    });
  }
  return services;
}

function wrapAll(
  methods: string[],
  rpcs: Partial<Rpcs<ControllerMethods>> | Partial<Rpcs<NodeMethods>>,
  ctx: CsiContext,
  service: string,
  observe?: CallObserver,
): UntypedServiceImplementation {
  const log = ctx.log.child({ service });
  const table = rpcs as Record<string, Rpc<unknown, unknown> | undefined>;
  const impl: UntypedServiceImplementation = {};
  for (const method of methods) {
    const rpc: Rpc<unknown, unknown> =
      table[method] ??
      (async () => {
        throw unimplemented(method, `the ${ctx.driver} plugin does not offer it`);
      });
    impl[method] = unary(method, rpc, log, observe);
  }
  return impl;
}
