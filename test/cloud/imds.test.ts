import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Imdsv2, StaticIdentity } from '../../src/cloud/imds.js';
import { LoopbackEndpoint } from '../fakes/aws/http-endpoint.js';
import { failure } from '../helpers/failure.js';

/**
 * Imdsv2 against a tiny instance metadata service on 127.0.0.1 (the fake endpoints' loopback
 * base): PUT a token, GET with it. The server checks the token like IMDS does (401 without it)
 * and records every request with its token headers; a test may script odd answers. The daemon's
 * and the SDK's IMDS is the fuller model in test/fakes/aws/imds.ts.
 */

const TOKEN = 'AQAEAFAKE-SESSION-TOKEN-0123456789==';

interface Seen {
  method: string;
  path: string;
  token: string | undefined;
  ttl: string | undefined;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

let server: LoopbackEndpoint | undefined;
let seen: Seen[];

/** A metadata service; `override` may answer a request itself (return true) or leave it to IMDS. */
async function imds(
  meta: Record<string, string> = {
    'instance-id': 'i-0123456789abcdef0\n',
    'placement/availability-zone': 'eu-central-1b\n',
    'placement/region': 'eu-central-1\n',
    mac: '0a:1b:2c:3d:4e:5f\n',
    'network/interfaces/macs/0a:1b:2c:3d:4e:5f/subnet-id': 'subnet-0123456789abcdef0\n',
  },
  override?: (req: IncomingMessage, res: ServerResponse) => boolean,
): Promise<string> {
  seen = [];
  const handler: Handler = (req, res) => {
    const path = req.url ?? '';
    seen.push({
      method: req.method ?? '',
      path,
      token: req.headers['x-aws-ec2-metadata-token'] as string | undefined,
      ttl: req.headers['x-aws-ec2-metadata-token-ttl-seconds'] as string | undefined,
    });
    if (override?.(req, res)) return;
    if (req.method === 'PUT' && path === '/latest/api/token') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) return void res.writeHead(400).end();
      return void res.writeHead(200).end(TOKEN);
    }
    if (req.method !== 'GET' || !path.startsWith('/latest/meta-data/')) return void res.writeHead(405).end();
    if (req.headers['x-aws-ec2-metadata-token'] !== TOKEN) return void res.writeHead(401).end();
    const value = meta[path.slice('/latest/meta-data/'.length)];
    if (value === undefined) return void res.writeHead(404).end('Not Found');
    res.writeHead(200).end(value);
  };
  return listen(handler);
}

/** Serves `handler` on the suite's loopback base for fake endpoints; its URL. */
async function listen(handler: Handler): Promise<string> {
  server = await LoopbackEndpoint.listen();
  server.serve(handler);
  return server.url;
}

afterEach(async () => {
  const s = server;
  server = undefined;
  await s?.close();
});

describe('Imdsv2', () => {
  it('takes a session token, then reads the identity with it', async () => {
    const endpoint = await imds();
    expect(await new Imdsv2(endpoint).identity()).toEqual({
      instanceId: 'i-0123456789abcdef0',
      availabilityZone: 'eu-central-1b',
      region: 'eu-central-1',
      subnetId: 'subnet-0123456789abcdef0',
    });
    expect(seen[0]).toEqual({ method: 'PUT', path: '/latest/api/token', token: undefined, ttl: '21600' });
    expect(seen.slice(1).sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { method: 'GET', path: '/latest/meta-data/instance-id', token: TOKEN, ttl: undefined },
      { method: 'GET', path: '/latest/meta-data/mac', token: TOKEN, ttl: undefined },
      {
        method: 'GET',
        path: '/latest/meta-data/network/interfaces/macs/0a:1b:2c:3d:4e:5f/subnet-id',
        token: TOKEN,
        ttl: undefined,
      },
      { method: 'GET', path: '/latest/meta-data/placement/availability-zone', token: TOKEN, ttl: undefined },
      { method: 'GET', path: '/latest/meta-data/placement/region', token: TOKEN, ttl: undefined },
    ]);
  });

  it('accepts an endpoint with a trailing slash', async () => {
    const endpoint = await imds();
    expect((await new Imdsv2(`${endpoint}/`).identity()).instanceId).toBe('i-0123456789abcdef0');
    expect(seen.map((s) => s.path)).toContain('/latest/api/token');
  });

  it('derives the region from the zone when IMDS has no placement/region', async () => {
    const endpoint = await imds({
      'instance-id': 'i-0123456789abcdef0',
      'placement/availability-zone': 'ap-southeast-2c',
    });
    expect(await new Imdsv2(endpoint).identity()).toEqual({
      instanceId: 'i-0123456789abcdef0',
      availabilityZone: 'ap-southeast-2c',
      region: 'ap-southeast-2',
    });
  });

  it('caches the identity: a second call makes no requests', async () => {
    const endpoint = await imds();
    const source = new Imdsv2(endpoint);
    const [a, b] = await Promise.all([source.identity(), source.identity()]);
    const requests = seen.length;
    expect(requests).toBe(6); // token, instance-id, zone, region, mac, subnet-id
    const c = await source.identity();
    expect(seen).toHaveLength(requests);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
  });

  it('retries a failed load on the next call', async () => {
    let failToken = true;
    const endpoint = await imds(undefined, (req, res) => {
      if (req.method === 'PUT' && failToken) {
        failToken = false;
        res.writeHead(503).end();
        return true;
      }
      return false;
    });
    const source = new Imdsv2(endpoint);
    const err = await failure(source.identity());
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe('instance metadata answered 503 for /latest/api/token');
    expect(await source.identity()).toMatchObject({ instanceId: 'i-0123456789abcdef0' });
    expect(seen.filter((s) => s.method === 'PUT')).toHaveLength(2);
  });

  it('says which path was refused, never the token', async () => {
    const endpoint = await imds(undefined, (req, res) => {
      if (req.url === '/latest/meta-data/instance-id') {
        res.writeHead(401).end(`token ${String(req.headers['x-aws-ec2-metadata-token'])} expired`);
        return true;
      }
      return false;
    });
    const err = await failure(new Imdsv2(endpoint).identity());
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe('instance metadata answered 401 for /latest/meta-data/instance-id');
    expect(err.message).not.toContain(TOKEN);
    expect(JSON.stringify(err.details)).not.toContain(TOKEN);
  });

  it('does not put the token in the message when a request with it does not answer', async () => {
    const endpoint = await imds(undefined, (req) => req.method === 'GET'); // GETs hang
    const err = await failure(new Imdsv2(endpoint, 200).identity());
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).not.toContain(TOKEN);
    expect(String(err.stack)).not.toContain(TOKEN);
  });

  it('gives up with UNAVAILABLE when nothing answers, and says to set aws.instanceId', async () => {
    const endpoint = await listen(() => undefined); // accepts, never answers
    const err = await failure(new Imdsv2(endpoint, 200).identity());
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(
      new RegExp(
        `^instance metadata \\(IMDSv2\\) at ${endpoint.replace(/\./g, '\\.')} did not answer within 200 ms: .+\\. ` +
          'Off EC2, set aws\\.instanceId and aws\\.availabilityZone in the config$',
      ),
    );
  });

  it('gives up with UNAVAILABLE when the endpoint refuses connections', async () => {
    const endpoint = await listen(() => undefined);
    const s = server!;
    server = undefined;
    await s.close();
    const err = await failure(new Imdsv2(endpoint, 1000).identity());
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('Off EC2, set aws.instanceId and aws.availabilityZone in the config');
  });
});

describe('StaticIdentity', () => {
  it('answers the identity it was given', async () => {
    const id = { instanceId: 'i-0123456789abcdef0', availabilityZone: 'us-east-1a', region: 'us-east-1' };
    expect(await new StaticIdentity(id).identity()).toEqual(id);
  });
});
