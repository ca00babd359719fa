/**
 * Loads csi.proto (next to this module, in the source tree and in dist/ alike) once, with the
 * proto-loader options messages.ts is typed for, and hands out the three CSI service definitions.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ControllerMethods, IdentityMethods, NodeMethods } from './messages.js';

export const CSI_PROTO_PATH = join(dirname(fileURLToPath(import.meta.url)), 'csi.proto');

/** The options messages.ts describes: change one and the types are wrong. */
export const CSI_LOADER_OPTIONS = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} as const satisfies protoLoader.Options;

/** Unary handlers for a service's methods, typed by messages.ts. */
export type Handlers<M> = {
  [K in keyof M]: M[K] extends [infer Req, infer Res] ? grpc.handleUnaryCall<Req, Res> : never;
};

export interface CsiDefinitions {
  identity: grpc.ServiceDefinition<Handlers<IdentityMethods>>;
  controller: grpc.ServiceDefinition<Handlers<ControllerMethods>>;
  node: grpc.ServiceDefinition<Handlers<NodeMethods>>;
  /** The loaded package: `pkg.csi.v1.Controller` etc. (clients for tests and tools). */
  pkg: grpc.GrpcObject;
  packageDefinition: protoLoader.PackageDefinition;
}

let loaded: CsiDefinitions | undefined;

// Every method of each service, so a proto that drifts from messages.ts fails at load.
const IDENTITY: Record<keyof IdentityMethods, true> = {
  GetPluginInfo: true,
  GetPluginCapabilities: true,
  Probe: true,
};
const CONTROLLER: Record<keyof ControllerMethods, true> = {
  CreateVolume: true,
  DeleteVolume: true,
  ControllerPublishVolume: true,
  ControllerUnpublishVolume: true,
  ValidateVolumeCapabilities: true,
  ListVolumes: true,
  GetCapacity: true,
  ControllerGetCapabilities: true,
  CreateSnapshot: true,
  DeleteSnapshot: true,
  ListSnapshots: true,
  GetSnapshot: true,
  ControllerExpandVolume: true,
  ControllerGetVolume: true,
  ControllerModifyVolume: true,
};
const NODE: Record<keyof NodeMethods, true> = {
  NodeStageVolume: true,
  NodeUnstageVolume: true,
  NodePublishVolume: true,
  NodeUnpublishVolume: true,
  NodeGetVolumeStats: true,
  NodeExpandVolume: true,
  NodeGetCapabilities: true,
  NodeGetInfo: true,
};

function serviceOf(
  def: protoLoader.PackageDefinition,
  name: string,
  methods: Record<string, true>,
): grpc.ServiceDefinition {
  const service = def[`csi.v1.${name}`];
  // Message and enum entries carry `format`; a service is a map of method definitions.
  if (!service || 'format' in service) throw new Error(`csi.proto has no service csi.v1.${name}`);
  const have = Object.keys(service).sort().join(' ');
  const want = Object.keys(methods).sort().join(' ');
  if (have !== want) throw new Error(`csi.v1.${name} has methods ${have}; messages.ts types ${want}`);
  return service;
}

export function loadCsi(): CsiDefinitions {
  if (loaded) return loaded;
  const packageDefinition = protoLoader.loadSync(CSI_PROTO_PATH, CSI_LOADER_OPTIONS);
  const defs: CsiDefinitions = {
    // serviceOf checked the method names against messages.ts, which is what these types add.
    identity: serviceOf(packageDefinition, 'Identity', IDENTITY) as grpc.ServiceDefinition<
      Handlers<IdentityMethods>
    >,
    controller: serviceOf(packageDefinition, 'Controller', CONTROLLER) as grpc.ServiceDefinition<
      Handlers<ControllerMethods>
    >,
    node: serviceOf(packageDefinition, 'Node', NODE) as grpc.ServiceDefinition<Handlers<NodeMethods>>,
    pkg: grpc.loadPackageDefinition(packageDefinition),
    packageDefinition,
  };
  loaded = defs;
  return defs;
}
