import { lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { StowageError } from '../base/errors.js';

/**
 * A socket file left by a crashed server is removed; one that answers belongs to a live server (the
 * Docker plugin sockets and the CSI endpoint both start this way).
 */
export async function clearStaleSocket(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isSocket()) {
    throw new StowageError(
      'CONFLICT',
      `${path} exists and is not a socket; move it away before starting stowage`,
    );
  }
  const alive = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    const timer = setTimeout(() => {
      c.destroy();
      resolve(true);
    }, 1000);
    c.once('connect', () => {
      clearTimeout(timer);
      c.destroy();
      resolve(true);
    });
    c.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (alive) {
    throw new StowageError(
      'CONFLICT',
      `another process already serves ${path}; stop it (is stowage already running?)`,
    );
  }
  await unlink(path);
}
