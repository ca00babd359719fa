import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { EBS_OPTION_SPECS } from '../../drivers/ebs/options.js';
import { EFS_OPTION_SPECS } from '../../drivers/efs/options.js';
import { LOCAL_OPTION_SPECS } from '../../drivers/local/options.js';
import { NFS_OPTION_SPECS } from '../../drivers/nfs/options.js';
import { FLEX_DRIVERS } from '../../flexvolume/capabilities.js';
import { DEFAULT_PLUGIN_DIR } from '../../flexvolume/install.js';
import { parseFlexOptions } from '../../flexvolume/options.js';
import { buildCli } from '../../src/cli/main.js';
import { loadConfig } from '../../src/config.js';
import { type OptionSpecs, parseOptions } from '../../src/core/options.js';

/**
 * The manifests in deploy/kubernetes are part of the product: every example's options must pass
 * the same parsers kubelet's calls go through, every Secret must have the type kubelet requires,
 * and the DaemonSet must install where kubelet looks, with a config the daemon accepts, from the
 * one image `npm run image` builds (deploy/image/Dockerfile).
 */
const ROOT = join(import.meta.dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const DIR = join(DEPLOY, 'kubernetes');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const SPECS: Record<string, OptionSpecs> = {
  ebs: EBS_OPTION_SPECS,
  efs: EFS_OPTION_SPECS,
  nfs: NFS_OPTION_SPECS,
  local: LOCAL_OPTION_SPECS,
};

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML of several kinds, walked by key
type Doc = Record<string, any>;
function docs(file: string): Doc[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    expect(d.errors, file).toEqual([]);
    return d.toJS() as Doc;
  });
}

const examples = readdirSync(join(DIR, 'examples')).map((f) => join(DIR, 'examples', f));

describe('deploy/kubernetes examples', () => {
  it('has one example per driver', () => {
    expect(examples.map((f) => f.split('/').pop()).sort()).toEqual([
      'ebs.yaml',
      'efs.yaml',
      'local.yaml',
      'nfs.yaml',
    ]);
  });

  for (const file of examples) {
    it(`${file.split('/').pop()}: flexVolume options pass the driver's parser, secrets have the driver's type`, () => {
      const all = docs(file);
      const flex = all.flatMap((d) => [
        ...(d.kind === 'PersistentVolume' ? [{ name: d.metadata.name, spec: d.spec.flexVolume }] : []),
        ...(d.kind === 'Pod'
          ? (d.spec.volumes ?? [])
              .filter((v: Doc) => v.flexVolume)
              .map((v: Doc) => ({ name: v.name, spec: v.flexVolume }))
          : []),
      ]);
      expect(flex.length, file).toBeGreaterThan(0);
      for (const { name, spec } of flex) {
        const driver = /^stowage\/(\w+)$/.exec(spec.driver)?.[1] ?? '';
        const traits = FLEX_DRIVERS[driver];
        expect(traits, spec.driver).toBeDefined();
        const json = JSON.stringify({
          'kubernetes.io/fsType': spec.fsType ?? '',
          'kubernetes.io/readwrite': 'rw',
          'kubernetes.io/pvOrVolumeName': name,
          ...spec.options,
        });
        const o = parseFlexOptions(json, traits!);
        expect(() => parseOptions(driver, SPECS[driver]!, o.driverOptions, {})).not.toThrow();
        if (spec.secretRef) {
          const secret = all.find((d) => d.kind === 'Secret' && d.metadata.name === spec.secretRef.name);
          expect(secret?.type).toBe(spec.driver);
        }
      }
    });
  }
});

describe('deploy/kubernetes/daemonset.yaml', () => {
  const all = docs(join(DIR, 'daemonset.yaml'));
  const ds = all.find((d) => d.kind === 'DaemonSet')!;
  const pod = ds.spec.template.spec;

  it("installs every driver into kubelet's default plugin directory, with its own node", () => {
    const install = pod.initContainers.find((c: Doc) => c.name === 'install');
    expect(install.args.slice(0, 2)).toEqual(['flexvolume', 'install']);
    const mount = install.volumeMounts.find((m: Doc) => m.name === 'flexvolume-dir').mountPath;
    expect(install.args[install.args.indexOf('--dir') + 1]).toBe(mount);
    expect(install.args[install.args.indexOf('--drivers') + 1].split(',').sort()).toEqual(
      Object.keys(FLEX_DRIVERS).sort(),
    );
    expect(install.args).toContain('--copy-node');
    expect(pod.volumes.find((v: Doc) => v.name === 'flexvolume-dir').hostPath.path).toBe(DEFAULT_PLUGIN_DIR);
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    // Lock holders are told dead or alive by pid: the daemon must see the host's processes.
    expect(pod.hostPID).toBe(true);
  });

  it('ships a config the daemon and the executable accept', async () => {
    const cm = all.find((d) => d.kind === 'ConfigMap')!;
    const dir = await mkdtemp(join(tmpdir(), 'stowage-deploy-'));
    try {
      const file = join(dir, 'config.yaml');
      await writeFile(file, cm.data['config.yaml']);
      const config = loadConfig({ file, env: {} });
      expect(config.drivers.sort()).toEqual(['ebs', 'efs', 'local', 'nfs']);
      expect(config.flexvolume.kubeletDir).toBe('/var/lib/kubelet');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** The exec-form (JSON array) value of a Dockerfile instruction such as ENTRYPOINT. */
function execForm(dockerfile: string, instruction: string): string[] | undefined {
  const line = dockerfile.split('\n').find((l) => l.startsWith(`${instruction} [`));
  return line ? (JSON.parse(line.slice(instruction.length + 1)) as string[]) : undefined;
}

describe('the DaemonSet runs the one image', () => {
  const ds = docs(join(DIR, 'daemonset.yaml')).find((d) => d.kind === 'DaemonSet')!;
  const pod = ds.spec.template.spec;
  const containers: Doc[] = [...pod.initContainers, ...pod.containers];

  it(`uses stowage:<package.json version> (stowage:${VERSION}), which npm run image tags`, () => {
    for (const c of containers) expect(c.image, c.name).toBe(`stowage:${VERSION}`);
  });

  it("gives stowage's containers args only: the image's entrypoint is stowage", () => {
    const dockerfile = readFileSync(join(DEPLOY, 'image', 'Dockerfile'), 'utf8');
    expect(execForm(dockerfile, 'ENTRYPOINT')).toEqual([
      'node',
      '--no-warnings',
      '/opt/stowage/bin/stowage.js',
    ]);
    expect(execForm(dockerfile, 'CMD')).toEqual(['daemon']);
    const commands = buildCli().commands.map((c) => c.name());
    const byName = (name: string) => containers.find((c) => c.name === name)!;
    for (const name of ['install', 'daemon']) {
      const c = byName(name);
      expect(c.command, name).toBeUndefined();
      // Global flags (with their values) come first, then one of stowage's commands.
      const args: string[] = c.args;
      let i = 0;
      while (args[i]?.startsWith('-')) i += 2;
      expect(commands, `${name}: ${args.join(' ')}`).toContain(args[i]);
    }
    expect(byName('daemon').args.at(-1)).toBe('daemon');
    // The one container that replaces the entrypoint runs a shell, not a second copy of stowage.
    for (const c of containers.filter((x) => x.command)) expect(c.command[0], c.name).toBe('sh');
  });
});

describe('deploy/', () => {
  it('holds one Dockerfile, deploy/image/Dockerfile: every way of running stowage uses that image', () => {
    const files = (readdirSync(DEPLOY, { recursive: true, encoding: 'utf8' }) as string[])
      .filter((f) => /(^|\.)(docker|container)file(\.|$)/i.test(basename(f)))
      .filter((f) => statSync(join(DEPLOY, f)).isFile())
      .map((f) => relative(ROOT, join(DEPLOY, f)))
      .sort();
    expect(files).toEqual(['deploy/image/Dockerfile']);
  });
});
