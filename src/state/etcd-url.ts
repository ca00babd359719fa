import { StowageError } from '../base/errors.js';

/** What `etcd://host1:2379,host2:2379/prefix` says. */
export interface EtcdUrl {
  /** `http://host:port` (or `https://` for `etcds://`), the form EtcdStore's `endpoints` take. */
  endpoints: string[];
  /** Key prefix every stowage key lives under, e.g. `/stowage`; never ends with `/`. */
  prefix: string;
  /** True for `etcds://`: talk TLS to every endpoint. */
  tls: boolean;
}

export const DEFAULT_ETCD_PORT = 2379;
export const DEFAULT_ETCD_PREFIX = '/stowage';

const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV6_RE = /^[0-9A-Fa-f:.]+$/;
const PREFIX_SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
const EXAMPLE = 'etcd://10.0.0.1:2379,10.0.0.2:2379/stowage';

/**
 * Parses `etcd://host1:2379,host2:2379/stowage` (`etcds://` for TLS). The port defaults to 2379,
 * the prefix to /stowage. Credentials never go in the URL: a URL that carries them is refused
 * without repeating them.
 */
export function parseEtcdUrl(url: string): EtcdUrl {
  const bad = (why: string) =>
    new StowageError(
      'CONFIG',
      `invalid etcd URL ${JSON.stringify(redact(url))}: ${why} (example: ${EXAMPLE})`,
    );
  if (typeof url !== 'string' || url.length === 0) throw bad('it is empty');
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)([?#].*)?$/.exec(url);
  if (!m) throw bad('expected etcd://host:port[,host:port...]/prefix');
  const [, scheme = '', authority = '', path = '', rest] = m;
  const lower = scheme.toLowerCase();
  if (lower !== 'etcd' && lower !== 'etcds') {
    throw bad(`the scheme must be etcd:// or etcds:// (TLS), not ${scheme}://`);
  }
  if (rest !== undefined) throw bad('query strings and fragments are not supported');
  if (authority.includes('@')) {
    throw bad(
      "credentials do not belong in the URL; give the user and password in the store's auth settings",
    );
  }
  if (authority === '') throw bad('no host given');
  const tls = lower === 'etcds';
  const endpoints = authority.split(',').map((entry) => {
    const { host, port } = parseHostPort(entry, bad);
    return `${tls ? 'https' : 'http'}://${host}:${port}`;
  });
  return { endpoints, prefix: parsePrefix(path, bad), tls };
}

function parseHostPort(entry: string, bad: (why: string) => StowageError): { host: string; port: number } {
  if (entry === '') throw bad('an empty host in the host list');
  let host: string;
  let portText: string | undefined;
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    if (close < 0) throw bad(`unclosed "[" in ${JSON.stringify(entry)}`);
    host = entry.slice(0, close + 1);
    if (!IPV6_RE.test(host.slice(1, -1))) throw bad(`${JSON.stringify(host)} is not an IPv6 address`);
    const after = entry.slice(close + 1);
    if (after !== '' && !after.startsWith(':'))
      throw bad(`unexpected ${JSON.stringify(after)} after ${host}`);
    portText = after === '' ? undefined : after.slice(1);
  } else {
    const parts = entry.split(':');
    if (parts.length > 2) throw bad(`${JSON.stringify(entry)}: write IPv6 addresses in brackets, [::1]:2379`);
    host = parts[0] ?? '';
    portText = parts[1];
    if (!HOSTNAME_RE.test(host)) throw bad(`${JSON.stringify(host)} is not a host name or address`);
  }
  if (portText === undefined) return { host, port: DEFAULT_ETCD_PORT };
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 1 && port <= 65535))
    throw bad(`port ${JSON.stringify(portText)} is not a number from 1 to 65535`);
  return { host, port };
}

function parsePrefix(path: string, bad: (why: string) => StowageError): string {
  const trimmed = path.replace(/\/+$/, '');
  if (trimmed === '') return DEFAULT_ETCD_PREFIX;
  const segments = trimmed.slice(1).split('/');
  for (const s of segments) {
    if (!PREFIX_SEGMENT_RE.test(s) || s === '.' || s === '..') {
      throw bad(`the key prefix ${JSON.stringify(trimmed)} may only have segments of [A-Za-z0-9._-]`);
    }
  }
  return trimmed;
}

/** The URL with any user:password@ replaced, safe for messages and logs. */
export function redact(url: string): string {
  return typeof url === 'string' ? url.replace(/\/\/[^/?#]*@/, '//***@') : String(url);
}
