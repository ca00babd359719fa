import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONTENT_TYPE } from './protocol.js';

/**
 * A tiny POST-only JSON router on node:http. express was the first choice, but measured in
 * bench/ it alone doubled the latency of a static reply; the plugin protocol needs nothing of it
 * beyond "read a bounded JSON body, dispatch on the path, answer JSON". A handler answers JSON
 * text, or its UTF-8 bytes (a large reply kept encoded: see list-reply.ts).
 */
export type RouteHandler = (body: unknown, caller: Caller) => Promise<string | Buffer>;

/** The request's caller, as far as the connection tells. */
export interface Caller {
  /**
   * Runs `undo` if the reply is never written out: the caller hung up or half-closed before it
   * (dockerd gave up on a slow Mount), so it will never act on the reply — nor ever Unmount a
   * mount it did not hear about. Runs at once when the caller is gone already.
   */
  onUndelivered(undo: () => Promise<void>): void;
  /** Runs `fn` once the reply has been handed to the operating system in full (node:http's 'finish'). */
  onDelivered(fn: () => void): void;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function createRouter(
  routes: ReadonlyMap<string, RouteHandler>,
  opts: { bodyLimit: number; onRejected: (message: string) => void },
) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const handler = req.method === 'POST' ? routes.get(req.url ?? '') : undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= opts.bodyLimit) chunks.push(chunk); // past the limit: drain, keep nothing
    });
    req.on('end', () => {
      if (!handler) return reject(res, opts, 404, `unknown endpoint ${req.method} ${req.url}`);
      if (size > opts.bodyLimit) {
        return reject(res, opts, 413, `request body is larger than the ${opts.bodyLimit / 1024}kb limit`);
      }
      // dockerd sends no Content-Type and sometimes no body (Activate): parse whatever arrives as JSON.
      const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch (err) {
          return reject(res, opts, 400, `malformed JSON in request body: ${(err as Error).message}`);
        }
      }
      handler(body, callerOf(res)).then(
        (json) => send(res, 200, json),
        (err: unknown) =>
          reject(res, opts, err instanceof HttpError ? err.status : 500, String((err as Error).message)),
      );
    });
    req.on('error', () => res.destroy());
  };
}

function callerOf(res: ServerResponse): Caller {
  const undos: (() => Promise<void>)[] = [];
  let lost = false;
  const run = (undo: () => Promise<void>) => void undo().catch(() => undefined); // undo logs its own failure
  // 'close' comes after 'finish' for a delivered reply; before it (or without it) the caller is gone.
  res.once('close', () => {
    if (res.writableFinished) return;
    lost = true;
    for (const undo of undos.splice(0)) run(undo);
  });
  return {
    onUndelivered(undo) {
      if (lost || res.destroyed) run(undo);
      else undos.push(undo);
    },
    onDelivered(fn) {
      res.once('finish', fn);
    },
  };
}

function reject(
  res: ServerResponse,
  opts: { onRejected: (m: string) => void },
  status: number,
  message: string,
) {
  opts.onRejected(message);
  send(res, status, JSON.stringify({ Err: message }));
}

function send(res: ServerResponse, status: number, json: string | Buffer): void {
  res.writeHead(status, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(json) });
  res.end(json);
}
