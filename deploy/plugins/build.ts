/**
 * `npm run plugins [-- --drivers local,ebs] [--image stowage:0.1.0] [--name stowage] [--tag 0.1.0]
 *  [--state-root /var/lib/stowage/plugins]`
 *
 * Builds one Docker managed plugin per driver (NAME/DRIVER:TAG) from the image with
 * `docker plugin create`. The plugins are left disabled: `docker plugin enable NAME/DRIVER:TAG`.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { packageVersion } from '../image/build.js';
import { DOCKER, hostArgs, run } from '../lib/run.js';
import { DEFAULT_STATE_ROOT, DRIVERS, type PluginDriver, pluginConfig } from './config.js';

export interface PluginOptions {
  drivers?: PluginDriver[];
  image?: string;
  name?: string;
  tag?: string;
  stateRoot?: string;
  /** A dockerd other than $DOCKER_HOST's. */
  host?: string;
}

export async function buildPlugins(opts: PluginOptions = {}): Promise<string[]> {
  const HOST = opts.host;
  const version = await packageVersion();
  const image = opts.image ?? `stowage:${version}`;
  const tag = opts.tag ?? version;
  const stateRoot = opts.stateRoot ?? DEFAULT_STATE_ROOT;
  const work = await mkdtemp(join(tmpdir(), 'stowage-plugins-'));
  const built: string[] = [];
  try {
    const rootfs = join(work, 'rootfs');
    await mkdir(rootfs);
    const cid = (await run(DOCKER, [...hostArgs(HOST), 'create', image], { quiet: true })).trim();
    try {
      await run(DOCKER, [...hostArgs(HOST), 'export', '-o', join(work, 'rootfs.tar'), cid], {
        timeoutMs: 300_000,
        quiet: true,
      });
    } finally {
      await run(DOCKER, [...hostArgs(HOST), 'rm', cid], { quiet: true });
    }
    await run('tar', ['-C', rootfs, '-xf', join(work, 'rootfs.tar')], { timeoutMs: 300_000 });
    await rm(join(work, 'rootfs.tar'));
    for (const driver of opts.drivers ?? DRIVERS) {
      const ref = `${opts.name ?? 'stowage'}/${driver}:${tag}`;
      // dockerd stores a plugin's rootfs by content: two plugins from identical trees collide
      // ("content already exists"), so each carries its own name.
      await writeFile(join(rootfs, 'etc', 'stowage-plugin'), `${ref}\n`);
      await writeFile(
        join(work, 'config.json'),
        `${JSON.stringify(pluginConfig(driver, stateRoot), null, 2)}\n`,
      );
      // The state directory must exist before enable: dockerd refuses to bind a missing source.
      await mkdir(join(stateRoot, driver), { recursive: true, mode: 0o700 });
      await run(DOCKER, [...hostArgs(HOST), 'plugin', 'create', ref, work], {
        timeoutMs: 600_000,
        quiet: true,
      });
      process.stderr.write(`created plugin ${ref} (disabled): docker plugin enable ${ref}\n`);
      built.push(ref);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return built;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      drivers: { type: 'string' },
      image: { type: 'string' },
      name: { type: 'string' },
      tag: { type: 'string' },
      'state-root': { type: 'string' },
    },
  });
  const drivers = values.drivers?.split(',').map((d) => d.trim());
  const unknown = drivers?.filter((d) => !(DRIVERS as readonly string[]).includes(d)) ?? [];
  if (unknown.length > 0) {
    process.stderr.write(
      `npm run plugins: unknown driver ${unknown.join(', ')}; known: ${DRIVERS.join(', ')}\n`,
    );
    process.exit(2);
  }
  buildPlugins({
    drivers: drivers as PluginDriver[] | undefined,
    image: values.image,
    name: values.name,
    tag: values.tag,
    stateRoot: values['state-root'],
  }).catch((err: Error) => {
    process.stderr.write(`npm run plugins: ${err.message}\n`);
    process.exit(1);
  });
}
