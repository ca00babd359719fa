import { request } from 'node:http';

export interface PluginReply {
  status: number;
  body: Record<string, unknown>;
}

/** One POST to a Docker plugin socket, as dockerd sends it (no Content-Type). */
export function callPlugin(
  socketPath: string,
  endpoint: string,
  body: unknown = {},
  timeoutMs = 10_000,
): Promise<PluginReply> {
  const payload = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        path: `/${endpoint}`,
        method: 'POST',
        headers: { Host: 'plugin.moby.localhost', Accept: 'application/vnd.docker.plugins.v1.2+json' },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            reject(new Error(`non-JSON reply from ${endpoint}: ${text.slice(0, 200)}`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${endpoint} did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
