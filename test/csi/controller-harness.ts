import { pino } from 'pino';
import type { CsiContext } from '../../csi/context.js';
import { controllerVolumes } from '../../csi/controller-volumes.js';
import { grpcError } from '../../csi/handler.js';
import type { ControllerPart } from '../../csi/plugin.js';
import type { CreateVolumeRequest, VolumeCapability } from '../../csi/proto/messages.js';
import { type DriverTraits, driverTraits } from '../../drivers/catalog.js';
import { failure } from '../helpers/failure.js';
import { TEST_HOST, type TestRuntime } from '../helpers/runtime.js';

/**
 * The controller volume RPCs over a test runtime (the real VolumeManager, store and drivers over
 * the fake kernel), called as plain functions with requests shaped as grpc-js delivers them.
 */
export function controllerFor(t: TestRuntime, driver: string, traits?: DriverTraits): ControllerPart {
  const ctx: CsiContext = {
    driver,
    traits: traits ?? driverTraits(driver)!,
    manager: t.manager,
    hosts: t.runtime.hosts,
    nodeId: TEST_HOST,
    version: '0.0.0-test',
    kubeletDir: '/var/lib/kubelet',
    log: pino({ level: 'silent' }),
    ready: () => true,
    checkStore: async () => undefined,
    nodeTopology: async () => undefined,
  };
  return controllerVolumes(ctx);
}

/** The gRPC status code the call fails with (as grpc-js would send it). */
export async function statusOf(p: Promise<unknown>): Promise<number> {
  return grpcError(await failure(p)).code ?? -1;
}

/** A mount capability with an access mode, as a server receives it. */
export function mountCap(mode: string, fsType = ''): VolumeCapability {
  return {
    accessType: 'mount',
    mount: { fsType, mountFlags: [], volumeMountGroup: '' },
    accessMode: { mode: mode as 'SINGLE_NODE_WRITER' },
  };
}

/** A CreateVolume request with every field present, as grpc-js delivers one. */
export function createRequest(over: Partial<CreateVolumeRequest> = {}): CreateVolumeRequest {
  return {
    name: 'pvc-1',
    capacityRange: null,
    volumeCapabilities: [mountCap('SINGLE_NODE_WRITER')],
    parameters: {},
    secrets: {},
    volumeContentSource: null,
    accessibilityRequirements: null,
    mutableParameters: {},
    ...over,
  };
}

export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

export function range(requiredBytes: number, limitBytes = 0) {
  return { requiredBytes: String(requiredBytes), limitBytes: String(limitBytes) };
}
