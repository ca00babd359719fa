import type { ServiceError } from '@grpc/grpc-js';
import { expect } from 'vitest';
import { TOPOLOGY_HOST } from '../../csi/context.js';
import { type DriverTraits, driverTraits } from '../../drivers/catalog.js';
import {
  createTestRuntime,
  TEST_HOST,
  type TestRuntime,
  type TestRuntimeOptions,
} from '../helpers/runtime.js';
import type { CsiClient } from './client.js';
import { serveTestPlugin } from './test-plugin.js';

/**
 * A node plugin over the fake kernel: the real composition of the door (csiServices) served by
 * serveCsi on a unix socket in a temp directory, a grpc-js client on it, and a kubelet directory
 * in the same temp directory. So the unit tests see the status codes a kubelet would.
 */
export interface NodeHarness {
  t: TestRuntime;
  client: CsiClient;
  kubelet: string;
  close(): Promise<void>;
}

export async function startNodePlugin(
  opts: { driver?: string; traits?: Partial<DriverTraits>; runtime?: TestRuntimeOptions } = {},
): Promise<NodeHarness> {
  const driver = opts.driver ?? 'local';
  const t = await createTestRuntime(opts.runtime);
  const plugin = await serveTestPlugin(
    t,
    {
      driver,
      traits: { ...driverTraits(driver)!, ...opts.traits },
      nodeTopology: async () => ({ [TOPOLOGY_HOST]: TEST_HOST }),
    },
    'node',
  );
  return { t, ...plugin };
}

/** The gRPC status name a call failed with; fails the test when it succeeds. */
export async function statusOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  expect(err, 'expected the call to fail').toBeDefined();
  return GRPC_NAMES[(err as ServiceError).code] ?? String((err as ServiceError).code);
}

const GRPC_NAMES: Record<number, string> = {
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
};

/** A mount-access-type capability for `mode`, as kubelet sends it. */
export function mountCap(
  mode = 'SINGLE_NODE_WRITER',
  mount: { fsType?: string; mountFlags?: string[]; volumeMountGroup?: string } = {},
) {
  return { accessMode: { mode }, mount: { fsType: '', mountFlags: [], volumeMountGroup: '', ...mount } };
}
