/**
 * Deployment benchmark (`npm run bench`, as root): what an operator feels from each way of
 * running stowage, next to Docker's own `local` driver measured in the same run.
 *
 * - `docker run --rm -v VOL:/data busybox true` through the built-in local driver (the floor), the
 *   host daemon, the managed plugin stowage/local and the compose stack; rounds interleave the
 *   four so that machine noise hits each alike. Goal: ≤ 1.3× the built-in driver.
 * - image size, `docker plugin enable` time, compose `up` to socket-ready time.
 * Writes its section of BENCHMARKS.md.
 */
import { execSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { buildImage, packageVersion } from '../deploy/image/build.js';
import { buildPlugins } from '../deploy/plugins/build.js';
import { activates, waitUntilServing } from '../src/docker/activate.js';
import { BENCH_IMAGE, startBenchDockerd } from './lib/dockerd.js';
import { startNode, stopChild, waitForSocket } from './lib/harness.js';
import { writeSection } from './lib/sections.js';

const REPO = join(fileURLToPath(import.meta.url), '..', '..');
const ROUNDS = Number(process.env.BENCH_DEPLOY_ROUNDS ?? 15);
const SOCKETS = '/run/docker/plugins';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const p90 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.ceil(xs.length * 0.9) - 1]!;
const ms = (x: number): string => `${x.toFixed(0)} ms`;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run the deploy benchmark as root (dockerd, mounts)');
  const started = Date.now();
  const work = join(REPO, '.bench-tmp', 'deploy');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  // The data dirs are shared mounts, as operators must make them (this host's / may be private).
  await execa('mount', ['--bind', work, work]);
  await execa('mount', ['--make-rshared', work]);
  const d = await startBenchDockerd();
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const buildMs = await timed(() => buildImage({ host: d.host }));
    const version = await packageVersion();
    const image = `stowage:${version}`;
    const imageBytes = Number(await d.docker(['image', 'inspect', '--format', '{{.Size}}', image]));

    // Managed plugin.
    await buildPlugins({ host: d.host, drivers: ['local'], stateRoot: join(work, 'plugins'), image });
    const plugin = `stowage/local:${version}`;
    cleanups.push(() => d.docker(['plugin', 'rm', '-f', plugin]).catch(() => undefined));
    const enableMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      enableMs.push(await timed(() => d.docker(['plugin', 'enable', plugin])));
      await d.docker(['plugin', 'disable', '-f', plugin]);
    }
    await d.docker(['plugin', 'enable', plugin]);

    // Host daemon, as `npm start` runs it.
    const hostDaemon = startNode('stowage', [join(REPO, 'bin', 'stowage.js'), 'daemon'], REPO, {
      ...process.env,
      STOWAGE_DATA_DIR: join(work, 'host'),
      STOWAGE_SOCKET_PREFIX: 'stowage-benchhost-',
      STOWAGE_HOST_ID: 'bench-host',
      STOWAGE_LOG_LEVEL: 'warn',
    });
    cleanups.push(() => stopChild(hostDaemon));
    await waitForSocket(hostDaemon, join(SOCKETS, 'stowage-benchhost-local.sock'), 30_000);

    // Compose stack: up → socket answers, three times; the last stays up.
    const composeEnv = {
      ...process.env,
      DOCKER_HOST: d.host,
      STOWAGE_IMAGE: image,
      STOWAGE_DATA_DIR: join(work, 'stack'),
      STOWAGE_CONFIG_DIR: join(work, 'stack-config'),
      STOWAGE_SOCKET_PREFIX: 'stowage-benchct-',
    };
    const compose = (args: string[]) =>
      execa(
        'docker-compose',
        ['-p', 'stowagebench', '-f', join(REPO, 'deploy', 'compose', 'docker-compose.yml'), ...args],
        {
          env: composeEnv,
          timeout: 180_000,
        },
      );
    cleanups.push(() => compose(['down', '-t', '20']).catch(() => undefined));
    const stackSock = join(SOCKETS, 'stowage-benchct-local.sock');
    const upMs: number[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await compose(['down', '-t', '20']);
      upMs.push(
        await timed(async () => {
          await compose(['up', '-d']);
          const missing = await waitUntilServing([stackSock], 60_000);
          if (missing.length > 0) throw new Error(`compose stack did not serve: ${JSON.stringify(missing)}`);
        }),
      );
    }
    if (!(await activates(stackSock, 5000))) throw new Error('compose stack socket not answering');

    // docker run through each.
    const variants: { name: string; driver: string; opts: string[] }[] = [
      { name: "Docker's built-in local driver", driver: 'local', opts: [] },
      { name: 'stowage host daemon', driver: 'stowage-benchhost-local', opts: ['-o', 'size=64M'] },
      { name: 'managed plugin stowage/local', driver: plugin, opts: ['-o', 'size=64M'] },
      { name: 'compose stack', driver: 'stowage-benchct-local', opts: ['-o', 'size=64M'] },
    ];
    for (const [i, v] of variants.entries()) {
      await d.docker(['volume', 'create', '-d', v.driver, ...v.opts, `bench${i}`]);
      cleanups.unshift(() => d.docker(['volume', 'rm', '-f', `bench${i}`]).catch(() => undefined));
      await d.docker(['run', '--rm', '-v', `bench${i}:/data`, BENCH_IMAGE, 'true']); // warm-up
    }
    const samples = variants.map(() => [] as number[]);
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < variants.length; k++) {
        const i = (k + r) % variants.length;
        samples[i]!.push(
          await timed(() =>
            d.docker(['run', '--rm', '--network', 'none', '-v', `bench${i}:/data`, BENCH_IMAGE, 'true']),
          ),
        );
      }
    }
    const floor = median(samples[0]!);
    const rows = variants.map((v, i) => {
      const m = median(samples[i]!);
      return `| ${v.name} | ${ROUNDS} | ${ms(m)} | ${ms(p90(samples[i]!))} | ${(m / floor).toFixed(2)}× |`;
    });
    const ratio = (i: number) => median(samples[i]!) / floor;
    const status = (i: number) => (ratio(i) <= 1.3 ? 'met' : 'not met');
    const cpu = cpus()[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown CPU';
    const markdown = [
      '## Deployment: image, managed plugin, compose stack',
      '',
      'Generated by `bench/deploy.ts` from one real run; do not edit by hand, rerun instead.',
      '',
      `Machine: ${cpus().length} CPUs (${cpu}), ${(totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, Linux ${release()}, dockerd ${await d.docker(['version', '--format', '{{.Server.Version}}'])}. Run on ${new Date().toISOString()}, took ${Math.round((Date.now() - started) / 1000)} s.`,
      '',
      '### `docker run --rm -v VOL:/data busybox true`',
      '',
      '| Volume served by | Runs | Median | p90 | Median / built-in |',
      '| --- | --- | --- | --- | --- |',
      ...rows,
      '',
      'Each run is a whole container start and stop through the private dockerd: Mount, the',
      "container, Unmount. The floor is Docker's built-in `local` driver (a directory, no plugin call)",
      'measured in the same rounds; the order of the four rotates every round.',
      '',
      '### Image and start-up',
      '',
      '| Figure | Measured |',
      '| --- | --- |',
      `| image size (\`docker image inspect\`) | ${(imageBytes / 1e6).toFixed(0)} MB |`,
      `| \`npm run image\` (bases cached in /var/cache/stowage-image) | ${(buildMs / 1000).toFixed(0)} s |`,
      `| \`docker plugin enable stowage/local\` (median of 5) | ${ms(median(enableMs))} |`,
      `| compose \`up -d\` to socket answering Plugin.Activate (median of 3) | ${ms(median(upMs))} |`,
      '',
      '### Targets',
      '',
      '| Target | Measured | Status |',
      '| --- | --- | --- |',
      `| managed plugin ≤ 1.3× built-in local | ${ratio(2).toFixed(2)}× | ${status(2)} |`,
      `| compose stack ≤ 1.3× built-in local | ${ratio(3).toFixed(2)}× | ${status(3)} |`,
      '',
    ].join('\n');
    process.stdout.write(`${markdown}\n`);
    await writeSection(join(REPO, 'BENCHMARKS.md'), 'deploy', markdown);
  } finally {
    for (const c of cleanups) await c().catch(() => undefined);
    await d.stop();
    execSync(`umount -R ${JSON.stringify(work)} || true`, { stdio: 'ignore' });
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench/deploy: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
