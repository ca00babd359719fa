import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { StowageError } from '../../src/base/errors.js';
import { loadConfig } from '../../src/config.js';
import { openStore } from '../../src/state/open.js';
import type { StateStore } from '../../src/state/store.js';
import { failure } from '../helpers/failure.js';
import { type EtcdService, startEtcd } from '../services/etcd.js';
import { volume } from './store-contract.js';

/**
 * The etcd store over TLS against a real etcd (test/services/etcd.ts in TLS mode) that demands a
 * client certificate: a config file with `etcds://` and PEM paths, read by loadConfig and opened by
 * openStore exactly as the daemon does. The certificates are made here with the openssl CLI (a
 * throwaway CA, a server certificate for IP 127.0.0.1, a client certificate, and a second CA that
 * signed neither) and deleted afterwards. Every misconfiguration must fail with a StowageError
 * that names the endpoint, well within the request timeout: never a hang.
 */

const REQUEST_TIMEOUT_MS = 4000;
/** A failure that the TLS handshake decides (no timeout involved) comes well before this. */
const FAST_MS = 2000;
const OPENSSL_TIMEOUT_MS = 20_000;

let dir: string;
let etcd: EtcdService;
let port: number;
const pem = (name: string) => join(dir, name);

beforeAll(async () => {
  await requireOpenssl();
  dir = await mkdtemp(join(tmpdir(), 'stowage-etcd-tls-'));
  await makeCa('ca');
  await makeCa('other-ca');
  await makeLeaf('server', 'ca', ['extendedKeyUsage=serverAuth,clientAuth', 'subjectAltName=IP:127.0.0.1']);
  await makeLeaf('client', 'ca', ['extendedKeyUsage=clientAuth']);
  etcd = await startEtcd({
    tls: {
      certFile: pem('server.pem'),
      keyFile: pem('server.key'),
      trustedCaFile: pem('ca.pem'),
      clientCertAuth: true,
      clientCertFile: pem('client.pem'),
      clientKeyFile: pem('client.key'),
    },
  });
  port = Number(new URL(etcd.endpoint).port);
});

afterAll(async () => {
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const opened: StateStore[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

let configs = 0;
/** Writes a config file with this `state` and `etcd` section, loads it and opens its store. */
async function openConfigured(state: string, etcdSection: Record<string, unknown>): Promise<StateStore> {
  const file = join(dir, `config-${++configs}.yaml`);
  await writeFile(file, stringify({ state, etcd: { ...etcdSection, requestTimeoutMs: REQUEST_TIMEOUT_MS } }));
  const config = loadConfig({ file, env: {} });
  expect(config.state).toBe(state);
  const store = await openStore(config);
  opened.push(store);
  return store;
}

const tlsUrl = () => `etcds://127.0.0.1:${port}/tls-test`;
const httpsEndpoint = () => `https://127.0.0.1:${port}`;
const clientCert = () => ({ ca: pem('ca.pem'), cert: pem('client.pem'), key: pem('client.key') });

/** The StowageError `p` rejects with and how long that took. */
async function timedFailure(p: Promise<unknown>): Promise<{ err: StowageError; ms: number }> {
  const started = performance.now();
  const err = await failure(p);
  return { err, ms: performance.now() - started };
}

describe('etcd store over TLS (etcds://, --client-cert-auth)', () => {
  it('creates and reads a volume and takes a lock with a client certificate', {
    timeout: 20_000,
  }, async () => {
    expect(etcd.url).toBe(`etcds://127.0.0.1:${port}`);
    const a = await openConfigured(tlsUrl(), clientCert());
    expect(a.kind).toBe('etcd');
    expect(JSON.parse(JSON.stringify(a))).toEqual({
      kind: 'etcd',
      endpoints: [httpsEndpoint()],
      prefix: '/tls-test',
    });

    const rec = volume('tls-vol', { createdAt: new Date().toISOString() });
    await a.insertVolume(rec);
    expect(await a.getVolume('tls-vol')).toEqual(rec);
    expect(await a.tryLock('volume/tls-vol', 'host-a', 60_000)).toEqual({ acquired: true });

    // A second client (connections of its own, as on another host) sees both over TLS.
    const b = await openConfigured(tlsUrl(), clientCert());
    expect(await b.getVolume('tls-vol')).toEqual(rec);
    const other = await b.tryLock('volume/tls-vol', 'host-b', 60_000);
    expect(other.acquired).toBe(false);
    expect(other.holder?.owner).toBe('host-a');
    await a.unlock('volume/tls-vol', 'host-a');
    expect(await b.tryLock('volume/tls-vol', 'host-b', 60_000)).toEqual({ acquired: true });
  });

  it('without a client certificate (only ca) fails within the request timeout, naming the endpoint', {
    timeout: 20_000,
  }, async () => {
    const s = await openConfigured(tlsUrl(), { ca: pem('ca.pem') });
    const { err, ms } = await timedFailure(s.getVolume('tls-vol'));
    expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS);
    // A certificate problem is the config's, and retrying cannot fix it.
    expect(err.code).toBe('CONFIG');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(
      new RegExp(
        `^get volume tls-vol: the metadata store etcd at ${escapeRe(httpsEndpoint())} refused the TLS connection \\(.*certificate.*\\); check etcd\\.ca \\(it must have signed etcd's certificate\\), etcd\\.cert and etcd\\.key in the config$`,
      ),
    );
    expect(err.message).not.toContain('\n');
    // Writes fail the same way: nothing reached etcd.
    const write = await timedFailure(s.insertVolume(volume('tls-no-cert')));
    expect(write.ms).toBeLessThan(REQUEST_TIMEOUT_MS);
    expect(write.err.code).toBe('CONFIG');
    expect(write.err.message).toContain(httpsEndpoint());
  });

  it('with a CA that did not sign the server certificate fails fast, naming the endpoint', {
    timeout: 20_000,
  }, async () => {
    const s = await openConfigured(tlsUrl(), { ...clientCert(), ca: pem('other-ca.pem') });
    const { err, ms } = await timedFailure(s.getVolume('tls-vol'));
    expect(ms).toBeLessThan(FAST_MS);
    expect(err.code).toBe('CONFIG');
    expect(err.message).toContain(
      `get volume tls-vol: the metadata store etcd at ${httpsEndpoint()} refused the TLS connection (`,
    );
    expect(err.message).toContain('unable to verify the first certificate');
  });

  it('plain etcd:// against the TLS server fails fast, naming the endpoint', {
    timeout: 20_000,
  }, async () => {
    const plainUrl = `etcd://127.0.0.1:${port}/tls-test`;
    const s = await openConfigured(plainUrl, {});
    const { err, ms } = await timedFailure(s.getVolume('tls-vol'));
    expect(ms).toBeLessThan(FAST_MS);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain(
      `get volume tls-vol: the metadata store etcd at http://127.0.0.1:${port} could not be reached: `,
    );
    expect(err.message).toMatch(/\(and use etcds:\/\/ if it serves TLS\)$/);

    // With the TLS files still in the config, etcd:// is refused before any connection is tried.
    const refused = await timedFailure(openConfigured(plainUrl, clientCert()));
    expect(refused.ms).toBeLessThan(FAST_MS);
    expect(refused.err.code).toBe('CONFIG');
    expect(refused.err.message).toBe(
      'invalid etcd store settings: TLS files are given but the endpoints use http://; use etcds://',
    );
  });
});

// ---- certificates (openssl CLI) ----

async function requireOpenssl(): Promise<void> {
  try {
    await execa('openssl', ['version'], { timeout: OPENSSL_TIMEOUT_MS });
  } catch (err) {
    throw new Error(
      `the etcd TLS tests make their certificates with the openssl CLI, which failed to run (${(err as Error).message}). ` +
        'Install it with `apt-get install -y openssl` and run the tests again.',
    );
  }
}

function openssl(args: string[]): Promise<unknown> {
  return execa('openssl', args, { cwd: dir, timeout: OPENSSL_TIMEOUT_MS });
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA: `<name>.pem` and `<name>.key`. `-config /dev/null`: no distro defaults. */
async function makeCa(name: string): Promise<void> {
  await openssl([
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '1',
    '-subj',
    `/CN=stowage test ${name}`,
    '-config',
    '/dev/null',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-addext',
    'subjectKeyIdentifier=hash',
  ]);
}

/** A certificate `<name>.pem` (+ `<name>.key`) signed by the CA `<ca>`, with these v3 extensions. */
async function makeLeaf(name: string, ca: string, extensions: string[]): Promise<void> {
  await openssl([
    'req',
    '-new',
    ...EC_KEY,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=stowage test ${name}`,
    '-config',
    '/dev/null',
  ]);
  await writeFile(
    join(dir, `${name}.ext`),
    ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', ...extensions, ''].join(
      '\n',
    ),
  );
  await openssl([
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.pem`,
  ]);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
