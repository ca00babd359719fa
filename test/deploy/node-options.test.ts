import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { NODE_OPTIONS } from '../../deploy/node-options.js';
import { DRIVERS, pluginConfig } from '../../deploy/plugins/config.js';

/**
 * The heap sizing of deploy/node-options.ts reaches every way stowage is deployed, with the same
 * value, and node takes it (a node that refuses an option in NODE_OPTIONS exits before running
 * anything, which would be a daemon that never starts).
 */
const ROOT = join(import.meta.dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');

describe('NODE_OPTIONS in every deploy form', () => {
  it('is set by the image (so the compose and Rancher stacks, the DaemonSet and the CSI pods get it)', () => {
    const dockerfile = readFileSync(join(DEPLOY, 'image', 'Dockerfile'), 'utf8');
    const lines = dockerfile.split('\n').filter((l) => /^ENV\s+NODE_OPTIONS=/.test(l));
    expect(lines).toEqual([`ENV NODE_OPTIONS="${NODE_OPTIONS}"`]);
  });

  it.each(DRIVERS)('is a settable env of the %s managed plugin, with the same value', (driver) => {
    const env = (
      pluginConfig(driver).env as Array<{ name: string; value: string; settable?: string[] }>
    ).filter((e) => e.name === 'NODE_OPTIONS');
    expect(env).toHaveLength(1);
    expect(env[0]!.value).toBe(NODE_OPTIONS);
    expect(env[0]!.settable).toEqual(['value']);
  });

  it('is set by the systemd unit, where /etc/stowage/stowage.env may replace it', () => {
    const unit = readFileSync(join(DEPLOY, 'systemd', 'stowage.service'), 'utf8').split('\n');
    expect(unit.filter((l) => l.startsWith('Environment='))).toEqual([
      `Environment="NODE_OPTIONS=${NODE_OPTIONS}"`,
    ]);
    expect(unit).toContain('EnvironmentFile=-/etc/stowage/stowage.env');
  });

  it("is given to the daemon that README's `npm start` runs", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts.start).toContain(`&& node ${NODE_OPTIONS} --no-warnings bin/stowage.js daemon`);
  });

  it('is overridden by no manifest: only the three places above name it', () => {
    const naming = (readdirSync(DEPLOY, { recursive: true, encoding: 'utf8' }) as string[])
      .filter((f) => statSync(join(DEPLOY, f)).isFile())
      .filter((f) => readFileSync(join(DEPLOY, f), 'utf8').includes('NODE_OPTIONS'))
      .map((f) => relative(ROOT, join(DEPLOY, f)))
      .sort();
    expect(naming).toEqual([
      'deploy/image/Dockerfile',
      'deploy/node-options.ts',
      'deploy/plugins/config.ts',
      'deploy/systemd/stowage.service',
    ]);
  });

  it('is taken by node: a 2000 MB old space and 4 MB semi-spaces', async () => {
    const probe = 'console.log(require("node:v8").getHeapStatistics().heap_size_limit)';
    const env = { ...process.env, NODE_OPTIONS };
    const res = await execa(process.execPath, ['-e', probe], { env, extendEnv: false });
    // V8's limit is the old space's plus the young generation's, three semi-spaces: 2000 + 3 x 4.
    expect(Number(res.stdout) / 1024 / 1024).toBe(2000 + 3 * 4);
  });
});
