import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import type { CsiContext } from '../../csi/context.js';
import { csiServices } from '../../csi/plugin.js';
import { type CsiMode, type CsiServer, serveCsi } from '../../csi/server.js';
import { TEST_HOST, type TestRuntime } from '../helpers/runtime.js';
import { type CsiClient, csiClient } from './client.js';

/** What a harness chooses of the plugin's context; the rest is the same for every test plugin. */
export type TestPluginContext = Pick<CsiContext, 'driver' | 'traits' | 'nodeTopology'>;

export interface TestPlugin {
  client: CsiClient;
  /** kubelet's directory, inside the runtime's temp directory. */
  kubelet: string;
  /** Stops the client and the server, then cleans the runtime up. */
  close(): Promise<void>;
}

/**
 * The real composition of the CSI door (csiServices, `mode`) over test runtime `t`, served by
 * serveCsi on a unix socket in the runtime's temp directory, with a grpc-js client on it and a
 * kubelet directory beside it: the status codes a kubelet or csi-sanity would see. Should the
 * server not start, the runtime is cleaned up before the error is passed on.
 */
export async function serveTestPlugin(
  t: TestRuntime,
  over: TestPluginContext,
  mode: CsiMode,
): Promise<TestPlugin> {
  const kubelet = join(t.dir, 'kubelet');
  let server: CsiServer;
  try {
    await mkdir(kubelet, { recursive: true });
    const ctx: CsiContext = {
      ...over,
      manager: t.manager,
      hosts: t.runtime.hosts,
      nodeId: TEST_HOST,
      version: '0.0.0-test',
      kubeletDir: kubelet,
      log: pino({ level: 'silent' }),
      ready: () => true,
      checkStore: async () => {},
    };
    server = await serveCsi(`unix://${join(t.dir, 'csi.sock')}`, csiServices(ctx, mode), ctx.log);
  } catch (err) {
    await t.cleanup();
    throw err;
  }
  const client = csiClient(server.path);
  return {
    client,
    kubelet,
    close: async () => {
      client.close();
      await server.close(1000);
      await t.cleanup();
    },
  };
}
