import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the suite's fake AWS endpoints share: an HTTP server on 127.0.0.1 with a port the kernel
 * picks, its URL for the SDK's `endpoint`, request bodies read with a size cap, and a stop that
 * does not wait for the SDK's kept-alive connections. The protocols (EFS's REST-JSON, IMDS's plain
 * text, EC2's Query/XML) stay in each fake: only this plumbing is the same.
 */

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** A request whose handler threw: recorded by the fake (a bug in it), answered 500 to the client. */
export type ErrorSink = (err: Error) => void;

export class LoopbackEndpoint {
  private stopped = false;

  private constructor(
    private readonly server: Server,
    /** `http://127.0.0.1:<port>`. */
    readonly url: string,
  ) {}

  /** Listens on a free port of 127.0.0.1; requests are refused (no handler) until serve(). */
  static async listen(): Promise<LoopbackEndpoint> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    return new LoopbackEndpoint(server, `http://127.0.0.1:${port}`);
  }

  /** Hands every request to `handler`. */
  serve(handler: RequestHandler): void {
    this.server.on('request', handler);
  }

  /**
   * Hands every request to an async `handler`; when it rejects, `onError` records the error and
   * the client gets a bare 500 (so a fake's own bug fails the test that checks its errors).
   */
  serveAsync(
    handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
    onError: ErrorSink,
  ): void {
    this.server.on('request', (req, res) => {
      handler(req, res).catch((err: unknown) => {
        onError(err as Error);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
  }

  /** Stops listening and cuts open connections (idle keep-alives included). Again is a no-op. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

/**
 * The request's body as text, read until `maxBytes`: 'too-large' past that (the caller answers in
 * its protocol's words), 'gone' when the client went away (or close() cut the connection).
 */
export async function readBody(
  req: IncomingMessage,
  maxBytes: number,
): Promise<string | 'too-large' | 'gone'> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) return 'too-large';
      chunks.push(chunk);
    }
  } catch {
    return 'gone';
  }
  return Buffer.concat(chunks).toString('utf8');
}
