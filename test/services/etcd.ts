import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ETCD_BIN = '/usr/bin/etcd';
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** PEM file paths for a TLS etcd (startEtcd's `tls`). */
export interface EtcdTlsOptions {
  /** The server's certificate (`--cert-file`); it must name 127.0.0.1 (subjectAltName IP:127.0.0.1). */
  certFile: string;
  /** Its key (`--key-file`). */
  keyFile: string;
  /**
   * The CA that signed the server's certificate and the clients' (`--trusted-ca-file`); the health
   * check trusts it for the server's certificate.
   */
  trustedCaFile: string;
  /**
   * `--client-cert-auth`: refuse clients without a certificate signed by trustedCaFile. When false,
   * `--trusted-ca-file` is not passed either: etcd 3.4 requires a client certificate whenever it
   * has a trusted CA, whatever `--client-cert-auth` says.
   */
  clientCertAuth: boolean;
  /**
   * The certificate and key the health check presents; default certFile and keyFile (etcd also
   * uses its server certificate as a client, so that one should allow clientAuth as well).
   */
  clientCertFile?: string;
  clientKeyFile?: string;
}

export interface EtcdServiceOptions {
  /** Serve clients over TLS only: `https://` client URLs, `etcds://` in `url`. Peers stay http. */
  tls?: EtcdTlsOptions;
}

export interface EtcdService {
  /**
   * `etcd://127.0.0.1:PORT` (`etcds://` with TLS; parseEtcdUrl's form); append `/<prefix>` for a
   * prefix of one's own.
   */
  url: string;
  /** `http://127.0.0.1:PORT` (`https://` with TLS), what EtcdStore takes in `endpoints`. */
  endpoint: string;
  /** SIGSTOP: the port still accepts connections but nothing answers (a hung server). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** SIGKILL and wait for the exit: the port refuses connections. The data dir is kept. */
  kill(): Promise<void>;
  /** Starts etcd again on the same ports and data dir and waits until it is healthy. */
  restart(): Promise<void>;
  /** Stops etcd (SIGTERM, SIGKILL after a deadline) and deletes its data dir. */
  stop(): Promise<void>;
}

/**
 * A private, real etcd (Debian's etcd-server) on loopback with free ports and a data dir on tmpfs
 * (etcd preallocates ~60 MB of WAL). Short heartbeat and election timeouts make it elect itself
 * in a few ms and lower etcd's minimum lease TTL to 1 s, so lease tests stay short.
 * With `tls`, clients are served over TLS only (and, with clientCertAuth, must show a certificate);
 * the health check then speaks TLS with the configured client certificate.
 */
export async function startEtcd(opts: EtcdServiceOptions = {}): Promise<EtcdService> {
  const { tls } = opts;
  if (!existsSync(ETCD_BIN)) {
    throw new Error(
      `${ETCD_BIN} is missing: the etcd tests run a real etcd server. Install it with ` +
        '`apt-get install -y etcd-server etcd-client` and run the tests again.',
    );
  }
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = await mkdtemp(join(base, 'stowage-etcd-'));
  const [clientPort, peerPort] = await freePorts(2);
  const endpoint = `${tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const logPath = join(dir, 'etcd.log');
  const args = [
    '--name=t',
    `--data-dir=${join(dir, 'data')}`,
    `--listen-client-urls=${endpoint}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=t=${peer}`,
    '--heartbeat-interval=10',
    '--election-timeout=100',
    '--logger=zap',
    '--log-level=warn',
  ];
  if (tls) {
    args.push(
      `--cert-file=${tls.certFile}`,
      `--key-file=${tls.keyFile}`,
      `--client-cert-auth=${tls.clientCertAuth}`,
    );
    if (tls.clientCertAuth) args.push(`--trusted-ca-file=${tls.trustedCaFile}`);
  }
  const health = tls ? await tlsHealthCheck(tls) : plainHealthCheck;

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let paused = false;

  const launch = async (): Promise<void> => {
    const log = await open(logPath, 'a');
    const proc = spawn(ETCD_BIN, args, { stdio: ['ignore', log.fd, log.fd] });
    await log.close(); // the child holds its own copy of the descriptor
    child = proc;
    // Should the test process end without stop() (a crash, a killed worker), etcd goes with it.
    const killOnExit = () => proc.kill('SIGKILL');
    process.once('exit', killOnExit);
    exited = new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve();
      else
        proc.once('exit', () => {
          process.off('exit', killOnExit);
          resolve();
        });
    });
    await waitHealthy(endpoint, health, proc, logPath);
  };

  const killNow = async (): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGKILL');
    if (paused) proc.kill('SIGCONT');
    paused = false;
    await exited;
  };

  try {
    await launch();
  } catch (err) {
    await killNow();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    url: `${tls ? 'etcds' : 'etcd'}://127.0.0.1:${clientPort}`,
    endpoint,
    pause() {
      child?.kill('SIGSTOP');
      paused = true;
    },
    resume() {
      child?.kill('SIGCONT');
      paused = false;
    },
    kill: killNow,
    async restart() {
      await killNow();
      await launch();
    },
    async stop() {
      const proc = child;
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        if (paused) proc.kill('SIGCONT');
        proc.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), STOP_TIMEOUT_MS)));
        if ((await Promise.race([exited, late])) === 'late') await killNow();
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** GET `<endpoint>/health` within `timeoutMs`: the HTTP status and body. */
type HealthCheck = (
  endpoint: string,
  timeoutMs: number,
) => Promise<{ status: number; ok: boolean; body: string }>;

const plainHealthCheck: HealthCheck = async (endpoint, timeoutMs) => {
  const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, ok: res.ok, body: await res.text() };
};

/** fetch cannot present a client certificate: node:https with the test CA and the client's cert. */
async function tlsHealthCheck(tls: EtcdTlsOptions): Promise<HealthCheck> {
  const [ca, cert, key] = await Promise.all([
    readFile(tls.trustedCaFile),
    readFile(tls.clientCertFile ?? tls.certFile),
    readFile(tls.clientKeyFile ?? tls.keyFile),
  ]);
  return (endpoint, timeoutMs) =>
    new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${endpoint}/health`,
        { ca, cert, key, agent: false, signal: AbortSignal.timeout(timeoutMs) },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            resolve({ status, ok: status >= 200 && status < 300, body });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
}

async function waitHealthy(
  endpoint: string,
  health: HealthCheck,
  proc: ChildProcess,
  logPath: string,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(
        `etcd exited (${proc.exitCode ?? proc.signalCode}) before it became healthy:\n${await tail(logPath)}`,
      );
    }
    try {
      const res = await health(endpoint, 1000);
      if (res.ok && /"health":\s*"true"/.test(res.body)) return;
      last = `HTTP ${res.status} ${res.body}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(25);
  }
  proc.kill('SIGKILL');
  throw new Error(
    `etcd at ${endpoint} was not healthy within ${READY_TIMEOUT_MS} ms (${last}):\n${await tail(logPath)}`,
  );
}

async function tail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').slice(-20).join('\n');
}

/** Ports the kernel hands out for port 0, all held at once so that they differ. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const addr = s.address();
    if (addr === null || typeof addr === 'string') throw new Error('no TCP address');
    return addr.port;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
