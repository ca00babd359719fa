/**
 * The "floor" for bench/socket-latency.ts: the cheapest server that still speaks the plugin
 * protocol's shape over a unix socket. It runs in its own process, like the daemon, so both sides
 * of the comparison pay the same IPC and scheduling costs; whatever the daemon takes beyond this
 * is the router, zod, the store and JSON work.
 *
 * Usage: node --import tsx bench/lib/floor-server.ts <socket-path>
 */
import { createServer } from 'node:http';

const socketPath = process.argv[2];
if (!socketPath) {
  process.stderr.write('usage: floor-server.ts <socket-path>\n');
  process.exit(2);
}

// Same media type the daemon answers with (src/docker/protocol.ts CONTENT_TYPE); kept literal so
// this process loads nothing but node:http.
const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';
// A Get-shaped reply, built once: the floor does no per-request work besides HTTP itself.
const GET_REPLY = Buffer.from(
  JSON.stringify({
    Volume: { Name: 'bench-vol-000001', Mountpoint: '', CreatedAt: new Date().toISOString(), Status: {} },
    Err: '',
  }),
);
// What List answers: a copy of the daemon's real List reply, handed over by the bench through
// POST /Floor.SetListReply. It tells how much of List's time is moving its bytes at all.
let listReply = GET_REPLY;

const server = createServer((req, res) => {
  // Read the whole body before answering, as the daemon's JSON body parser has to.
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let reply = GET_REPLY;
    if (req.url === '/Floor.SetListReply') listReply = Buffer.concat(chunks);
    else if (req.url === '/VolumeDriver.List') reply = listReply;
    res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Content-Length': reply.length });
    res.end(reply);
  });
});

server.listen(socketPath);

// Closing the server also removes its socket file.
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
