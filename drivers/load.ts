/**
 * One driver's factory, loaded on demand: the flexvolume executable serves a single driver and
 * must not pay for loading the others (cold start counts on every kubelet call).
 */
export { loadDriver } from './catalog.js';
