import { type Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { loadCsi } from '../../csi/proto/load.js';
import type { ServiceMethods, ServiceName } from '../../csi/proto/messages.js';

/**
 * A CSI client as the sidecars and kubelet are: grpc-js with our proto, over the plugin's unix
 * socket. Replies come back as proto-loader delivers them to a client (the same options as the
 * server: camelCase, int64 as strings, enums as names); failures reject with the ServiceError,
 * whose `code` is the gRPC status.
 */
export interface CsiClient {
  call<S extends ServiceName, M extends keyof ServiceMethods[S]>(
    service: S,
    method: M,
    request: ServiceMethods[S][M] extends [infer Req, unknown]
      ? Partial<Req> | Record<string, unknown>
      : never,
    opts?: { deadlineMs?: number },
  ): Promise<ServiceMethods[S][M] extends [unknown, infer Res] ? DeepReceived<Res> : never>;
  close(): void;
}

/** What a client receives: what the server sent, with proto-loader's defaults filled in. */
// biome-ignore lint/suspicious/noExplicitAny: replies are read field by field by the tests
export type DeepReceived<T> = T & Record<string, any>;

type UnaryFn = (
  req: unknown,
  meta: unknown,
  opts: { deadline: Date },
  cb: (err: ServiceError | null, res: unknown) => void,
) => void;

export function csiClient(socketPath: string): CsiClient {
  const { pkg } = loadCsi();
  const v1 = (pkg.csi as Record<string, unknown>).v1 as Record<
    string,
    new (
      addr: string,
      creds: unknown,
    ) => Client
  >;
  const address = `unix:${socketPath}`;
  const clients: Record<ServiceName, Client> = {
    Identity: new v1.Identity!(address, credentials.createInsecure()),
    Controller: new v1.Controller!(address, credentials.createInsecure()),
    Node: new v1.Node!(address, credentials.createInsecure()),
  };
  return {
    call(service, method, request, opts = {}) {
      const client = clients[service] as unknown as Record<string, UnaryFn>;
      const fn = client[method as string];
      if (!fn) throw new Error(`no method ${String(method)} on ${service}`);
      const deadline = new Date(Date.now() + (opts.deadlineMs ?? 60_000));
      return new Promise((resolve, reject) => {
        fn.call(client, request, new Metadata(), { deadline }, (err, res) =>
          err ? reject(err) : resolve(res as never),
        );
      });
    },
    close() {
      for (const c of Object.values(clients)) c.close();
    },
  };
}
