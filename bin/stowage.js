#!/usr/bin/env node
// Thin launcher so `npx stowage …` works in a checkout: the CLI itself is compiled TypeScript.
import { main } from '../dist/src/cli/main.js';

main(process.argv).catch((err) => {
  process.stderr.write(`stowage: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
