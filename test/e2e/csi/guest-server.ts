/**
 * The CSI plugin as the node DaemonSet runs it (`stowage csi --mode all`), bundled for the qemu
 * guest of test/e2e/csi-nfs-guest.test.ts: the same code as the CLI's command, with the SQLite
 * addon next to the bundle (the guest has node but no node_modules).
 *
 * argv: <driver> <endpoint> <kubeletDir>. Reads /etc/stowage/config.yaml; serves until SIGTERM.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { csiConfig, startCsi } from '../../../src/cli/csi.js';
import { loadConfig } from '../../../src/config.js';
import { openRuntime } from '../../../src/runtime.js';

const [driver = '', endpoint = '', kubeletDir = ''] = process.argv.slice(2);
const config = csiConfig(loadConfig(), driver);
const rt = await openRuntime(config, {
  nativeBinding: join(dirname(fileURLToPath(import.meta.url)), 'better_sqlite3.node'),
});
const csi = await startCsi(rt, { driver, endpoint, mode: 'all', kubeletDir });
process.once('SIGTERM', () => {
  void csi.stop().then(() => process.exit(0));
});
