import { readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { expect } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { socketPathOf } from '../../csi/endpoint.js';
import { DRIVER_NAMES, type DriverName } from '../../drivers/catalog.js';

/**
 * Reading deploy/kubernetes/csi as a cluster would: each driver's kustomization with its
 * resources, the workloads in it, and where in a container a path or a socket lies. Shared by
 * the static checks (kubernetes-csi.test.ts) and the e2e that runs the manifests' stowage
 * command lines for real (test/e2e/csi-deploy.test.ts).
 */
export const ROOT = join(import.meta.dirname, '..', '..');
export const CSI_DEPLOY = join(ROOT, 'deploy', 'kubernetes', 'csi');
export const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML of many kinds, walked by key
export type Doc = Record<string, any>;

export function parseFile(file: string): Doc[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => {
      expect(d.errors, file).toEqual([]);
      return d.toJS() as Doc | null;
    })
    .filter((d): d is Doc => d !== null);
}

/** The objects a kustomization's resources make (files and, recursively, directories). */
export function kustomize(dir: string): Doc[] {
  const [k] = parseFile(join(dir, 'kustomization.yaml'));
  expect(k?.kind, dir).toBe('Kustomization');
  return (k!.resources as string[]).flatMap((r) => {
    const path = join(dir, r);
    return statSync(path).isDirectory() ? kustomize(path) : parseFile(path);
  });
}

/** Every driver's objects: `kubectl apply -k deploy/kubernetes/csi/<driver>`. */
export function csiBundles(): Record<DriverName, Doc[]> {
  return Object.fromEntries(DRIVER_NAMES.map((d) => [d, kustomize(join(CSI_DEPLOY, d))])) as Record<
    DriverName,
    Doc[]
  >;
}

/** A flag's value, given as `--flag value` or `--flag=value`. */
export function argValue(args: string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (args[i]!.startsWith(`${flag}=`)) return args[i]!.slice(flag.length + 1);
  }
  return undefined;
}

export interface Workload {
  kind: 'Deployment' | 'DaemonSet';
  name: string;
  pod: Doc;
  containers: Doc[];
}

export function workloads(all: Doc[]): Workload[] {
  return all
    .filter((d) => d.kind === 'Deployment' || d.kind === 'DaemonSet')
    .map((d) => ({
      kind: d.kind,
      name: d.metadata.name,
      pod: d.spec.template.spec,
      containers: [...(d.spec.template.spec.initContainers ?? []), ...d.spec.template.spec.containers],
    }));
}

export const isStowage = (c: Doc): boolean => String(c.image).startsWith('stowage:');

const SIDECAR_IMAGE = /^registry\.k8s\.io\/sig-storage\/([a-z-]+)(?::v\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})$/;
/** The sidecar a container runs (its image name), when its image is pinned to a release or digest. */
export const sidecarOf = (c: Doc): string | undefined => SIDECAR_IMAGE.exec(c.image)?.[1];

/** Where a path inside a container lies: the pod volume mounted above it and the rest of the path. */
export function volumePath(c: Doc, path: string): { volume: string; rest: string } | undefined {
  const mounts = ((c.volumeMounts ?? []) as Doc[])
    .filter((m) => path === m.mountPath || path.startsWith(`${String(m.mountPath).replace(/\/$/, '')}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length);
  const m = mounts[0];
  return m ? { volume: m.name, rest: posix.relative(m.mountPath, path) } : undefined;
}

/** The socket a container talks to: stowage's --endpoint, a sidecar's --csi-address. */
export function socketOf(c: Doc): string | undefined {
  const args: string[] = c.args ?? [];
  if (isStowage(c)) {
    const endpoint = argValue(args, '--endpoint');
    return endpoint === undefined ? undefined : socketPathOf(endpoint);
  }
  return argValue(args, '--csi-address');
}

/** stowage's argv split into global flags, the command, and the command's flags. */
export function stowageArgv(c: Doc): { globals: string[]; command: string; flags: string[] } {
  const args: string[] = c.args;
  let i = 0;
  while (args[i]?.startsWith('-')) i += 2; // every global flag of stowage takes a value
  return { globals: args.slice(0, i), command: args[i]!, flags: args.slice(i + 1) };
}
