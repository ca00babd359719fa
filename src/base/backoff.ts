import { setTimeout as sleep } from 'node:timers/promises';
import { StowageError } from './errors.js';

export interface PollOptions {
  /** Overall deadline for the wait, in milliseconds from now. */
  timeoutMs: number;
  /** First pause; short so that the common fast case is answered quickly. */
  initialDelayMs?: number;
  /** Longest pause between two tries. */
  maxDelayMs?: number;
  /** Says what we waited for, used in the TIMEOUT message. */
  what: string;
  /** What the user can do when the wait runs out. */
  hint?: string;
}

/**
 * Calls `probe` until it returns a value other than undefined, pausing with exponential backoff
 * (initial, ×2, capped) between tries. Throws TIMEOUT when the deadline passes: every wait in
 * stowage has one.
 */
export async function pollUntil<T>(probe: () => Promise<T | undefined>, opts: PollOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let delay = opts.initialDelayMs ?? 5;
  const maxDelay = opts.maxDelayMs ?? 500;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    const left = deadline - Date.now();
    if (left <= 0) {
      const hint = opts.hint ? ` ${opts.hint}` : '';
      throw new StowageError(
        'TIMEOUT',
        `timed out after ${formatMs(opts.timeoutMs)} waiting for ${opts.what}.${hint}`,
      );
    }
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, maxDelay);
  }
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}
