import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildCli } from '../../src/cli/main.js';
import { loadConfig } from '../../src/config.js';
import { openRuntime } from '../../src/runtime.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { useTestAwsCredentials } from '../helpers/aws-credentials.js';

/**
 * `stowage snapshots create|ls|rm` against the suite's EC2 (through the real SDK) and a SQLite
 * store in a temp directory: the commands print what the core answers.
 */

const INSTANCE = 'i-0c110000000000001';
let dir: string;
let ec2: FakeEc2;
let configFile: string;
let out: string[];

useTestAwsCredentials();

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stowage-cli-snap-'));
  ec2 = await FakeEc2.start({ stateDelayMs: 10 });
  ec2.addInstance({ instanceId: INSTANCE, availabilityZone: 'us-east-1a', blockDevices: false });
  configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    [
      `dataDir: ${join(dir, 'data')}`,
      'hostId: cli-host',
      'drivers: [ebs]',
      'aws:',
      '  region: us-east-1',
      `  instanceId: ${INSTANCE}`,
      '  availabilityZone: us-east-1a',
      '  maxAttempts: 1',
      'ebs:',
      `  endpoint: ${ec2.url}`,
      '',
    ].join('\n'),
  );
  const rt = await openRuntime(loadConfig({ file: configFile, env: {} }));
  try {
    await rt.manager.create('ebs', 'db', { size: '2' });
  } finally {
    await rt.close();
  }
  out = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out.push(String(chunk));
    return true;
  });
});

afterEach(async () => {
  vi.restoreAllMocks();
  await ec2.stop();
  await rm(dir, { recursive: true, force: true });
});

async function stowage(...args: string[]): Promise<string> {
  out.length = 0;
  await buildCli().parseAsync(['node', 'stowage', '-c', configFile, ...args]);
  return out.join('');
}

describe('stowage snapshots', () => {
  it('create prints the id (the same again), ls lists it, rm deletes it (again: success)', async () => {
    const id = (await stowage('snapshots', 'create', 'db', 'before-upgrade')).trim();
    expect(id).toMatch(/^snap-/);
    expect((await stowage('snapshots', 'create', 'db', 'before-upgrade')).trim()).toBe(id);
    expect(ec2.snapshotList).toHaveLength(1);

    const table = (await stowage('snapshots', 'ls')).split('\n');
    expect(table[0]).toMatch(/^ID\s+NAME\s+VOLUME\s+SIZE\s+STATE\s+CREATED$/);
    expect(table[1]).toMatch(
      new RegExp(`^${id}\\s+before-upgrade\\s+db\\s+2G\\s+(pending|complete)\\s+\\d{4}-`),
    );
    const json = JSON.parse(await stowage('snapshots', 'ls', '--volume', 'db', '--json'));
    expect(json).toEqual([expect.objectContaining({ id, name: 'before-upgrade', volume: 'db' })]);
    expect(JSON.parse(await stowage('snapshots', 'ls', '--volume', 'other', '--json'))).toEqual([]);

    expect((await stowage('snapshots', 'rm', id)).trim()).toBe(id);
    expect((await stowage('snapshots', 'rm', id)).trim()).toBe(id);
    expect(ec2.snapshotList).toEqual([]);
  });

  it('create of an unknown volume fails with NOT_FOUND and takes nothing', async () => {
    await expect(stowage('snapshots', 'create', 'nope', 'n')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(ec2.snapshotList).toEqual([]);
  });
});
