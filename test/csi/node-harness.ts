import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { expect } from 'vitest';
import { type CsiContext, TOPOLOGY_HOST } from '../../csi/context.js';
import { csiServices } from '../../csi/plugin.js';
import { type CsiServer, serveCsi } from '../../csi/server.js';
import { type DriverTraits, driverTraits } from '../../drivers/catalog.js';
import {
  createTestRuntime,
  TEST_HOST,
  type TestRuntime,
  type TestRuntimeOptions,
} from '../helpers/runtime.js';
import { type CsiClient, csiClient } from './client.js';

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
  const kubelet = join(t.dir, 'kubelet');
  await mkdir(kubelet, { recursive: true });
  const ctx: CsiContext = {
    driver,
    traits: { ...driverTraits(driver)!, ...opts.traits },
    manager: t.manager,
    hosts: t.runtime.hosts,
    nodeId: TEST_HOST,
    version: '0.0.0-test',
    kubeletDir: kubelet,
    log: pino({ level: 'silent' }),
    ready: () => true,
    checkStore: async () => {},
    nodeTopology: async () => ({ [TOPOLOGY_HOST]: TEST_HOST }),
  };
  let server: CsiServer | undefined;
  try {
    server = await serveCsi(`unix://${join(t.dir, 'csi.sock')}`, csiServices(ctx, 'node'), ctx.log);
  } catch (err) {
    await t.cleanup();
    throw err;
  }
  const client = csiClient(server.path);
  return {
    t,
    client,
    kubelet,
    close: async () => {
      client.close();
      await server.close(1000);
      await t.cleanup();
    },
  };
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
