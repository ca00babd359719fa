/**
 * `npm run image [-- --registry] [--base IMG --builder IMG] [--name stowage] [--save FILE]`
 *
 * Builds stowage:<package version> and stowage:latest from deploy/image/Dockerfile. By default
 * its two bases are made offline (deploy/image/rootfs.ts), so no container registry is needed;
 * --registry uses the Dockerfile's own bases (node:22-bookworm[-slim]) from Docker Hub.
 */
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DOCKER, hostArgs, run } from '../lib/run.js';
import { ensureOfflineBases } from './rootfs.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ImageOptions {
  name?: string;
  base?: string;
  builder?: string;
  registry?: boolean;
  save?: string;
  /** A dockerd other than $DOCKER_HOST's. */
  host?: string;
}

export async function packageVersion(): Promise<string> {
  return (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Builds the image and returns its versioned reference. */
export async function buildImage(opts: ImageOptions = {}): Promise<string> {
  const name = opts.name ?? 'stowage';
  const HOST = opts.host;
  const version = await packageVersion();
  const args: string[] = [];
  if (!opts.registry) {
    const offline = opts.base && opts.builder ? undefined : await ensureOfflineBases(HOST);
    args.push('--build-arg', `BASE=${opts.base ?? offline?.base}`);
    args.push('--build-arg', `BUILDER=${opts.builder ?? offline?.builder}`);
  }
  // npm inside the build trusts what the host's node trusts (a TLS-inspecting proxy's CA).
  const ctx = join(ROOT, 'dist', 'image-build');
  await rm(ctx, { recursive: true, force: true });
  await mkdir(ctx, { recursive: true });
  const ca = process.env.NODE_EXTRA_CA_CERTS;
  if (ca) await copyFile(ca, join(ctx, 'npm-ca.crt'));
  const ref = `${name}:${version}`;
  const started = Date.now();
  await run(
    DOCKER,
    [
      ...hostArgs(HOST),
      'build',
      '--network',
      'host',
      '-f',
      join(ROOT, 'deploy', 'image', 'Dockerfile'),
      ...args,
      '-t',
      ref,
      '-t',
      `${name}:latest`,
      ROOT,
    ],
    // The classic builder: BuildKit is a separate component that Debian's docker.io may lack.
    { timeoutMs: 1_200_000, env: { ...process.env, DOCKER_BUILDKIT: '0' }, quiet: true },
  );
  await rm(ctx, { recursive: true, force: true });
  const size = Number(
    await run(DOCKER, [...hostArgs(HOST), 'image', 'inspect', '--format', '{{.Size}}', ref], { quiet: true }),
  );
  process.stderr.write(
    `built ${ref} (and ${name}:latest): ${Math.round(size / 1e6)} MB in ${Math.round((Date.now() - started) / 1000)} s\n`,
  );
  if (opts.save)
    await run(DOCKER, [...hostArgs(HOST), 'save', '-o', opts.save, ref, `${name}:latest`], {
      timeoutMs: 300_000,
    });
  return ref;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      name: { type: 'string' },
      base: { type: 'string' },
      builder: { type: 'string' },
      registry: { type: 'boolean' },
      save: { type: 'string' },
    },
  });
  buildImage(values).catch((err: Error) => {
    process.stderr.write(`npm run image: ${err.message}\n`);
    process.exit(1);
  });
}
