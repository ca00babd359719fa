import { readdir, readFile, readlink } from 'node:fs/promises';

/**
 * The TCP sockets process `pid` listens on, as `address:port` (IPv6 in brackets), read from the
 * kernel: its file descriptors' socket inodes matched against /proc/net/tcp and tcp6 (state 0A).
 */
export async function listeningTcpSockets(pid: number | 'self' = 'self'): Promise<string[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const out: string[] = [];
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`/proc/${pid}/net/${table}`, 'utf8');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue;
      out.push(formatAddress(f[1]!, table === 'tcp6'));
    }
  }
  return out.sort();
}

/** /proc/net/tcp's `0100007F:2505` (little-endian words) -> `127.0.0.1:9477`. */
function formatAddress(hex: string, v6: boolean): string {
  const [addr, port] = hex.split(':') as [string, string];
  const words = addr.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((w) => (w.match(/../g) ?? []).reverse().map((b) => Number.parseInt(b, 16)));
  const host = v6
    ? `[${Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16)).join(':')}]`
    : bytes.join('.');
  return `${host}:${Number.parseInt(port, 16)}`;
}
