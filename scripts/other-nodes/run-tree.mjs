// A private copy of the project to run the suite on another Node: the same sources, and a
// node_modules whose packages are the project's own (symlinks) except better-sqlite3, which is
// the copy compiled for that Node. The project's node_modules is never changed: other runs on the
// machine's Node share it.
import { realpathSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

/** What a checkout holds that a run makes again or never reads. */
const LEFT_OUT = new Set(['node_modules', 'dist', '.git', '.bench-tmp']);

/**
 * @param {string} project the checkout
 * @param {string} addonModules from ensureSqliteAddon(): better-sqlite3 and its dependencies
 * @param {string} label e.g. node22, for the directory's name
 * @returns {Promise<string>} the new tree's root (the caller removes it)
 */
export async function makeRunTree(project, addonModules, label) {
  const root = await mkdtemp(join(tmpdir(), `stowage-${label}-`));
  for (const name of await readdir(project)) {
    if (LEFT_OUT.has(name)) continue;
    await cp(join(project, name), join(root, name), {
      recursive: true,
      // tsc -b would trust an old build-info file and emit nothing into the empty dist/.
      filter: (src) => !src.endsWith('.tsbuildinfo'),
    });
  }
  // A worktree's node_modules may itself be a symlink; the packages live where it points.
  const modules = realpathSync(join(project, 'node_modules'));
  const own = new Set(await readdir(addonModules));
  await mkdir(join(root, 'node_modules'));
  for (const name of await readdir(modules)) {
    // Caches (.vite, .cache) stay private to each tree; .bin holds the package executables.
    if (name.startsWith('.') && name !== '.bin') continue;
    const from = own.has(name) ? join(addonModules, name) : join(modules, name);
    await symlink(from, join(root, 'node_modules', basename(name)));
  }
  return root;
}
