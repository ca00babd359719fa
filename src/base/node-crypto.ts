import { createRequire } from 'node:module';

/**
 * node:crypto, loaded on first use. Why: a cold node process pays about 2.5 ms to load it, and the
 * flexvolume executable (started by kubelet once per call) needs it only on rare paths: a mount id
 * too long to keep whole, a config cache being rewritten. Code on those paths calls this instead
 * of importing node:crypto at the top.
 */
let loaded: typeof import('node:crypto') | undefined;

export function nodeCrypto(): typeof import('node:crypto') {
  loaded ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  return loaded;
}
