import { access, constants, mkdir } from 'node:fs/promises';
import type { Config } from '../config.js';
import type { DoctorCheck } from '../core/driver.js';
import { openRuntime, type Runtime } from '../runtime.js';
import type { StoreFreshness } from '../state/store.js';

const TOOLS = ['mount', 'umount', 'losetup', 'blkid', 'mkfs.ext4'];

/** `stowage doctor`: every check runs even when an earlier one fails, each with what to do. */
export async function runDoctor(config: Config): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const isRoot = process.getuid?.() === 0;
  checks.push({
    name: 'root',
    ok: isRoot,
    detail: isRoot ? 'running as root' : 'stowage must run as root (it mounts and attaches devices)',
  });

  let rt: Runtime | undefined;
  try {
    // With the daemon's read cache: the check also shows that etcd's watch works from here.
    rt = await openRuntime(config, { readCache: true });
    const n = (await rt.store.listVolumes()).length;
    checks.push({ name: 'store', ok: true, detail: `${config.state} readable (${n} volumes)` });
    const cache = readCacheCheck(rt.store.freshness?.());
    if (cache) checks.push(cache);
  } catch (err) {
    checks.push({ name: 'store', ok: false, detail: (err as Error).message });
  }
  if (rt) {
    for (const tool of TOOLS) {
      const ok = await rt.mounter.hasTool(tool);
      checks.push({
        name: `tool ${tool}`,
        ok,
        detail: ok ? 'found' : 'missing: apt-get install mount util-linux e2fsprogs',
      });
    }
    for (const driver of rt.registry.enabled()) checks.push(...((await driver.doctor?.()) ?? []));
    await rt.close();
  }
  try {
    await mkdir(config.socketDir, { recursive: true, mode: 0o755 });
    await access(config.socketDir, constants.W_OK);
    checks.push({ name: 'socket dir', ok: true, detail: `${config.socketDir} writable` });
  } catch (err) {
    checks.push({ name: 'socket dir', ok: false, detail: `${config.socketDir}: ${(err as Error).message}` });
  }
  checks.push(await dockerReachable());
  checks.push(await metricsCheck(config));
  return checks;
}

/** etcd's read cache as this process found it: live (the watch answers) or why not. */
export function readCacheCheck(f: StoreFreshness | undefined): DoctorCheck | undefined {
  if (!f?.cached) return undefined;
  if (f.state === 'live') {
    return {
      name: 'store read cache',
      ok: true,
      detail: `live at revision ${f.revision}: Get, Path and List answer from memory, kept current by etcd's watch`,
    };
  }
  const why = f.reason ? `: ${f.reason}` : '';
  return {
    name: 'store read cache',
    ok: false,
    detail: `${f.state} since ${f.since}${why}; Get and List ${f.stale ? `answer from a copy at revision ${f.revision}, marked stale` : 'go to etcd directly'} until etcd's watch answers (check that etcd is reachable and that the etcd user may watch the prefix)`,
  };
}

/**
 * Whether the daemon serves metrics, and where. Nothing answering is fine (the daemon serves them
 * only while it runs); something else answering there is not: the daemon could not listen.
 */
export async function metricsCheck(config: Config, timeoutMs = 2000): Promise<DoctorCheck> {
  const { listen } = config.metrics;
  if (!listen) {
    return {
      name: 'metrics',
      ok: true,
      detail: 'off (set metrics.listen, e.g. 127.0.0.1:9477, to serve /metrics)',
    };
  }
  const url = `http://${listen}/metrics`;
  let reply: Response;
  try {
    reply = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch {
    return {
      name: 'metrics',
      ok: true,
      detail: `on at ${url} (not answering now; the daemon serves it while it runs)`,
    };
  }
  const text = await reply.text().catch(() => '');
  if (reply.ok && text.includes('stowage_requests_total')) {
    return { name: 'metrics', ok: true, detail: `on at ${url} (answering)` };
  }
  return {
    name: 'metrics',
    ok: false,
    detail: `metrics.listen is ${listen}, but something else answers there (HTTP ${reply.status}); the daemon cannot serve metrics on it: choose another port`,
  };
}

async function dockerReachable(): Promise<DoctorCheck> {
  const socketPath = process.env.DOCKER_HOST?.startsWith('unix://')
    ? process.env.DOCKER_HOST.slice('unix://'.length)
    : '/var/run/docker.sock';
  // Loaded here, not at the top: dockerode costs ~27 MB of RSS that the daemon has no use for.
  const { default: Docker } = await import('dockerode');
  const docker = new Docker({ socketPath, timeout: 3000 });
  try {
    await docker.ping();
    return { name: 'dockerd', ok: true, detail: `answering on ${socketPath}` };
  } catch (err) {
    return {
      name: 'dockerd',
      ok: false,
      detail: `not reachable on ${socketPath} (${(err as Error).message}); start dockerd, or ignore on Kubernetes-only nodes`,
    };
  }
}
