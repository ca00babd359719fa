import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';
import { buildImage, packageVersion } from '../../deploy/image/build.js';
import type { PrivateDockerd } from './dockerd.js';
import { docker } from './env.js';

/**
 * The stowage image in this file's private dockerd. The first file that asks builds it with
 * `npm run image`'s own code (offline bases from mmdebstrap + the npm registry, no container
 * registry) and saves it in the run's directory; later files load that tarball. The bases are
 * built in the run's directory too, so every run proves the build from scratch.
 * It runs with this file's dockerd: tests change the image's bases, never the host's images.
 */
export async function stowageImage(dockerd: PrivateDockerd): Promise<string> {
  const ref = `stowage:${await packageVersion()}`;
  const suiteDir = inject('suiteDir');
  // A developer iterating on a test may point this at `npm run image -- --save FILE`'s output;
  // CI never sets it, so every CI run builds the image.
  const tarball = process.env.STOWAGE_TEST_IMAGE_TARBALL ?? join(suiteDir, 'stowage-image.tar');
  if (existsSync(tarball)) {
    const loaded = await docker(['load', '-i', tarball], 300_000);
    if (loaded.exitCode !== 0) throw new Error(`docker load ${tarball} failed: ${loaded.stderr}`);
    return ref;
  }
  process.env.STOWAGE_IMAGE_CACHE = join(suiteDir, 'image-cache');
  await buildImage({ host: dockerd.host, save: tarball });
  return ref;
}
