import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.js';

/**
 * Asks a plugin socket what dockerd asks first: POST /Plugin.Activate. `stowage ready` (a
 * container healthcheck, a systemd ExecStartPost) waits on this, so "ready" means exactly "dockerd
 * can use the plugin now", not merely "the process is up" or "the socket file exists".
 */

/** <socketDir>/<socketPrefix><driver>.sock, where `stowage daemon` serves a driver. */
export function socketPath(config: Pick<Config, 'socketDir' | 'socketPrefix'>, driver: string): string {
  return join(config.socketDir, `${config.socketPrefix}${driver}.sock`);
}

/** Replies are a few bytes; anything much larger is not our plugin. */
const MAX_REPLY = 64 * 1024;

/** Why the socket does not activate (no socket, refused, timeout, wrong reply); undefined when it does. */
export function activateError(path: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (why: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(why);
    };
    // A whole-request limit: http's own `timeout` only notices an idle socket.
    const timer = setTimeout(() => done(`no answer within ${timeoutMs} ms`), timeoutMs);
    const req = request(
      {
        socketPath: path,
        path: '/Plugin.Activate',
        method: 'POST',
        // As dockerd sends it: no body, no Content-Type.
        headers: { Host: 'plugin.moby.localhost', Accept: 'application/vnd.docker.plugins.v1.2+json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
          if (text.length > MAX_REPLY) done('reply too large');
        });
        res.on('end', () => done(res.statusCode === 200 ? checkReply(text) : `HTTP ${res.statusCode}`));
        res.on('error', (err) => done(err.message));
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    req.end();
  });
}

function checkReply(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { Implements?: unknown };
    if (Array.isArray(body.Implements) && body.Implements.includes('VolumeDriver')) return undefined;
  } catch {
    // not JSON: reported below like any other wrong reply
  }
  return `not a volume plugin reply: ${text.slice(0, 100)}`;
}

/** True when the socket answers Plugin.Activate as a volume driver within `timeoutMs`. */
export async function activates(path: string, timeoutMs: number): Promise<boolean> {
  return (await activateError(path, timeoutMs)) === undefined;
}

export interface NotServing {
  path: string;
  /** The last attempt's failure, e.g. ENOENT (no socket yet) or ECONNREFUSED (stale file). */
  reason: string;
}

/**
 * Polls every socket until each has answered once, with backoff from 50 ms (a daemon that is
 * starting usually comes up within a few hundred ms), for at most `deadlineMs` from now.
 * Returns the sockets that never answered; empty means all serve.
 */
export async function waitUntilServing(paths: readonly string[], deadlineMs: number): Promise<NotServing[]> {
  const deadline = Date.now() + deadlineMs;
  let pending = paths.map((path) => ({ path, reason: 'not tried' }));
  let delay = 50;
  for (;;) {
    // Each try is bounded too, so one hung socket cannot hold the others long past the deadline;
    // at least 100 ms, so the last try near the deadline still says why (ENOENT, ...).
    const tryMs = Math.max(100, Math.min(2_000, deadline - Date.now()));
    const reasons = await Promise.all(pending.map((p) => activateError(p.path, tryMs)));
    pending = pending.flatMap((p, i) =>
      reasons[i] === undefined ? [] : [{ path: p.path, reason: reasons[i]! }],
    );
    const left = deadline - Date.now();
    if (pending.length === 0 || left <= 0) return pending;
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, 1_000);
  }
}
