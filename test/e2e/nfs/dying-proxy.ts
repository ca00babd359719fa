import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './ganesha.js';

/**
 * A TCP proxy in front of ganesha that the guest can "kill": a connection to `cutPort` makes it
 * stop forwarding on every connection, open or new, without closing any of them. To the guest's
 * NFS client that is a server gone silent, as a crashed or unplugged machine is (no reset, no
 * refusal: its requests are simply never answered), while ganesha itself keeps serving the others.
 */
export interface DyingProxy {
  port: number;
  cutPort: number;
  /** Whether the guest asked to cut (it did, if its dead-server step ran). */
  readonly cut: boolean;
  stop(): Promise<void>;
}

export async function startDyingProxy(upstreamPort: number): Promise<DyingProxy> {
  const sockets: Socket[] = [];
  const pairs: [Socket, Socket][] = [];
  let cut = false;
  const proxy = createServer((client) => {
    sockets.push(client);
    client.on('error', () => undefined);
    if (cut) return; // accepted, never answered
    const upstream = createConnection({ host: '127.0.0.1', port: upstreamPort });
    sockets.push(upstream);
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    pairs.push([client, upstream]);
  });
  const cutter = createServer((s) => {
    cut = true;
    for (const [client, upstream] of pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      // Whatever either side sends from now on is read and dropped.
      client.resume();
      upstream.resume();
    }
    s.end('cut\n');
  });
  const port = await freePort();
  const cutPort = await freePort();
  await listen(proxy, port);
  await listen(cutter, cutPort);
  return {
    port,
    cutPort,
    get cut() {
      return cut;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await Promise.all([close(proxy), close(cutter)]);
    },
  };
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok());
  });
}

function close(server: Server): Promise<void> {
  return new Promise((ok) => server.close(() => ok()));
}
