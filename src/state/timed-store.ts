import { type CallObserver, timeMethods } from '../base/timed-methods.js';
import type { StateStore } from './store.js';

/**
 * The store with every call timed (for stowage_store_request_duration_seconds and its failures).
 * The backends stay free of metrics code; the runtime puts this around whichever store it opened.
 */
export function timedStore(store: StateStore, observe: CallObserver): StateStore {
  return timeMethods(store, observe);
}
