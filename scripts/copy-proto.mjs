// tsc compiles csi/ to dist/csi/ but copies nothing else: csi/proto/load.ts reads csi.proto from
// its own directory, so the .proto files go next to the built JS (dist/csi/proto/).
import { cp, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'csi', 'proto');
const to = join(root, 'dist', 'csi', 'proto');

for (const name of await readdir(from)) {
  if (name.endsWith('.proto')) await cp(join(from, name), join(to, name));
}
