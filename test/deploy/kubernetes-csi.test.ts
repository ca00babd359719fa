import { readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pluginName } from '../../csi/context.js';
import { DRIVER_NAMES, DRIVER_TRAITS, type DriverName } from '../../drivers/catalog.js';
import { EBS_OPTION_SPECS } from '../../drivers/ebs/options.js';
import { EFS_OPTION_SPECS } from '../../drivers/efs/options.js';
import { LOCAL_OPTION_SPECS } from '../../drivers/local/options.js';
import { NFS_OPTION_SPECS } from '../../drivers/nfs/options.js';
import { buildCli } from '../../src/cli/main.js';
import { loadConfig } from '../../src/config.js';
import { type OptionSpecs, parseOptions } from '../../src/core/options.js';
import {
  argValue,
  CSI_DEPLOY,
  csiBundles,
  type Doc,
  isStowage,
  parseFile,
  sidecarOf,
  socketOf,
  stowageArgv,
  VERSION,
  volumePath,
  workloads,
} from './csi-manifests.js';

/**
 * deploy/kubernetes/csi is what a cluster runs: each driver's kustomization (its CSIDriver,
 * controller Deployment, node DaemonSet, StorageClasses, plus ../common) is parsed here and its
 * cross-references checked, so that a typo in a name, a path, a flag or an image fails CI
 * instead of a cluster. What each check stands for is in docs/csi.md.
 */
const CSI = CSI_DEPLOY;
const KUBELET_DIR = '/var/lib/kubelet';
const NAMESPACE = 'stowage-system';
const SPECS: Record<DriverName, OptionSpecs> = {
  ebs: EBS_OPTION_SPECS,
  efs: EFS_OPTION_SPECS,
  nfs: NFS_OPTION_SPECS,
  local: LOCAL_OPTION_SPECS,
};
/** The sidecars, by the image name under registry.k8s.io/sig-storage, and the role each needs. */
const SIDECAR_ROLES: Record<string, string | undefined> = {
  'csi-provisioner': 'stowage-csi-provisioner',
  'csi-attacher': 'stowage-csi-attacher',
  'csi-resizer': 'stowage-csi-resizer',
  'csi-snapshotter': 'stowage-csi-snapshotter',
  'csi-node-driver-registrar': undefined,
  livenessprobe: undefined,
};

function flagNames(args: string[]): string[] {
  return args.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!);
}

const cli = buildCli();
const csiCommand = cli.commands.find((c) => c.name() === 'csi')!;
const GLOBAL_FLAGS = cli.options.map((o) => o.long);
const CSI_FLAGS = csiCommand.options.map((o) => o.long);

const bundles = csiBundles();

describe('deploy/kubernetes/csi layout', () => {
  it('has a folder per driver, plus common', () => {
    const dirs = readdirSync(CSI).filter((f) => statSync(join(CSI, f)).isDirectory());
    expect(dirs.sort()).toEqual([...DRIVER_NAMES, 'common'].sort());
  });

  for (const dir of [...DRIVER_NAMES, 'common']) {
    it(`${dir}: the kustomization lists every manifest of its folder`, () => {
      const [k] = parseFile(join(CSI, dir, 'kustomization.yaml'));
      const files = readdirSync(join(CSI, dir)).filter(
        (f) => f.endsWith('.yaml') && f !== 'kustomization.yaml',
      );
      const listed = (k!.resources as string[]).filter((r) => r.endsWith('.yaml'));
      expect(listed.sort()).toEqual(files.sort());
      if (dir !== 'common') expect(k!.resources).toContain('../common');
    });
  }
});

describe.each(DRIVER_NAMES)('the %s CSI plugin', (driver) => {
  const all = bundles[driver];
  const traits = DRIVER_TRAITS[driver];
  const name = pluginName(driver);
  const loads = workloads(all);
  const byKind = (kind: string) => all.filter((d) => d.kind === kind);

  it('makes stowage-system a namespace where privileged pods are admitted', () => {
    const ns = byKind('Namespace');
    expect(ns.map((d) => d.metadata.name)).toEqual([NAMESPACE]);
    expect(ns[0]!.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');
  });

  it('puts every namespaced object in stowage-system', () => {
    const clusterScoped = new Set([
      'Namespace',
      'CSIDriver',
      'StorageClass',
      'VolumeSnapshotClass',
      'ClusterRole',
      'ClusterRoleBinding',
    ]);
    for (const d of all.filter((x) => !clusterScoped.has(x.kind))) {
      expect(d.metadata.namespace, `${d.kind} ${d.metadata.name}`).toBe(NAMESPACE);
    }
  });

  it(`has one CSIDriver, ${name}, with the driver's traits`, () => {
    const drivers = byKind('CSIDriver');
    expect(drivers.map((d) => d.metadata.name)).toEqual([name]);
    expect(drivers[0]!.spec).toEqual({
      attachRequired: traits.flexAttach,
      podInfoOnMount: false,
      fsGroupPolicy: traits.fsGroup ? 'File' : 'None',
      volumeLifecycleModes: ['Persistent'],
      requiresRepublish: false,
      storageCapacity: traits.hostLocal,
    });
  });

  it(`has StorageClasses provisioned by ${name} whose parameters pass the driver's option parser`, () => {
    const classes = byKind('StorageClass');
    expect(classes.length).toBeGreaterThan(0);
    for (const sc of classes) {
      const what = `StorageClass ${sc.metadata.name}`;
      expect(sc.provisioner, what).toBe(name);
      // The sidecars' own keys (fstype, secrets) are theirs; every other one is a Docker -o option.
      const params: Record<string, string> = sc.parameters ?? {};
      for (const v of Object.values(params)) expect(typeof v, `${what}: quote every value`).toBe('string');
      const options = Object.fromEntries(
        Object.entries(params).filter(([k]) => !k.startsWith('csi.storage.k8s.io/')),
      );
      expect(() => parseOptions(driver, SPECS[driver], options, {}), what).not.toThrow();
      expect('csi.storage.k8s.io/fstype' in params, `${what}: fstype only for a block driver`).toBe(
        traits.blockFs,
      );
      // A volume bound to a zone or a host is created where its first pod is scheduled.
      expect(sc.volumeBindingMode, what).toBe(
        traits.zonal || traits.hostLocal ? 'WaitForFirstConsumer' : 'Immediate',
      );
      expect(sc.allowVolumeExpansion ?? false, what).toBe(traits.requiresFSResize);
    }
  });

  it('has a VolumeSnapshotClass exactly when the controller runs csi-snapshotter', () => {
    const snapshotters = loads.flatMap((w) => w.containers).filter((c) => sidecarOf(c) === 'csi-snapshotter');
    const classes = byKind('VolumeSnapshotClass');
    expect(classes.length > 0).toBe(snapshotters.length > 0);
    for (const c of classes) expect(c.driver).toBe(name);
  });

  it('runs a node DaemonSet, and a controller Deployment unless volumes are made on their node', () => {
    expect(loads.filter((w) => w.kind === 'DaemonSet')).toHaveLength(1);
    expect(loads.filter((w) => w.kind === 'Deployment')).toHaveLength(traits.hostLocal ? 0 : 1);
  });

  describe.each(loads.map((w) => [`${w.kind} ${w.name}`, w] as const))('%s', (_, w) => {
    const stowage = w.containers.filter(isStowage);
    const sidecars = w.containers.filter((c) => !isStowage(c));
    const mode = w.kind === 'Deployment' ? 'controller' : traits.hostLocal ? 'all' : 'node';

    it(`runs stowage:${VERSION} as \`csi --driver ${driver} --mode ${mode}\` with flags stowage knows`, () => {
      expect(stowage).toHaveLength(1);
      const c = stowage[0]!;
      expect(c.image).toBe(`stowage:${VERSION}`);
      expect(c.command, 'the image entrypoint is stowage: give args only').toBeUndefined();
      const argv = stowageArgv(c);
      expect(argv.command).toBe('csi');
      for (const f of flagNames(argv.globals)) expect(GLOBAL_FLAGS, f).toContain(f);
      for (const f of flagNames(argv.flags)) expect(CSI_FLAGS, f).toContain(f);
      expect(argValue(argv.flags, '--driver')).toBe(driver);
      expect(argValue(argv.flags, '--mode')).toBe(mode);
    });

    it('reads the config file from the ConfigMap, and that config is one the plugin accepts', async () => {
      const c = stowage[0]!;
      const file = argValue(stowageArgv(c).globals, '--config')!;
      const at = volumePath(c, file)!;
      const vol = w.pod.volumes.find((v: Doc) => v.name === at.volume);
      const cm = all.find((d) => d.kind === 'ConfigMap' && d.metadata.name === vol?.configMap?.name);
      expect(cm, `ConfigMap of ${file}`).toBeDefined();
      const text = cm!.data[at.rest];
      expect(text, `${at.rest} in ConfigMap ${cm!.metadata.name}`).toBeTypeOf('string');
      const dir = await mkdtemp(join(tmpdir(), 'stowage-csi-deploy-'));
      try {
        await writeFile(join(dir, 'config.yaml'), text);
        const config = loadConfig({ file: join(dir, 'config.yaml'), env: {} });
        // The controller and the nodes are different machines: they must share one store.
        expect(config.state).toMatch(/^etcds?:\/\//);
        expect(config.drivers).toContain(driver);
        const data = (c.volumeMounts as Doc[]).find((m) => m.mountPath === config.dataDir);
        expect(data, `a volume at dataDir ${config.dataDir}`).toBeDefined();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("mounts only the pod's volumes, and every sidecar reaches stowage's socket", () => {
      const volumes = new Set((w.pod.volumes as Doc[]).map((v) => v.name));
      for (const c of w.containers) {
        for (const m of c.volumeMounts ?? []) expect(volumes, `${c.name}: ${m.name}`).toContain(m.name);
      }
      const served = volumePath(stowage[0]!, socketOf(stowage[0]!)!);
      expect(served, "stowage's socket is on a volume the sidecars can mount").toBeDefined();
      expect(sidecars.length).toBeGreaterThan(0);
      for (const c of sidecars) {
        const socket = socketOf(c);
        expect(socket, `${c.name}: --csi-address`).toBeDefined();
        expect(volumePath(c, socket!), `${c.name}: ${socket}`).toEqual(served);
      }
    });

    it('runs the sidecars the driver needs, pinned to an exact release', () => {
      const names = sidecars.map((c) => {
        const s = sidecarOf(c);
        expect(s, `${c.name}: ${c.image} is not pinned by exact tag or digest`).toBeDefined();
        return s!;
      });
      const expected =
        w.kind === 'Deployment'
          ? [
              'csi-provisioner',
              ...(traits.flexAttach ? ['csi-attacher'] : []),
              ...(traits.requiresFSResize ? ['csi-resizer'] : []),
              ...(byKind('VolumeSnapshotClass').length > 0 ? ['csi-snapshotter'] : []),
              'livenessprobe',
            ]
          : [...(traits.hostLocal ? ['csi-provisioner'] : []), 'csi-node-driver-registrar', 'livenessprobe'];
      expect(names.sort()).toEqual(expected.sort());
    });

    it("gives csi-provisioner the driver's topology, fstype and placement flags", () => {
      const p = sidecars.find((c) => sidecarOf(c) === 'csi-provisioner');
      if (!p) return expect(w.kind).toBe('DaemonSet');
      const args: string[] = p.args;
      expect(args).toContain('--extra-create-metadata');
      expect(args.includes('--feature-gates=Topology=true')).toBe(traits.zonal || traits.hostLocal);
      expect(argValue(args, '--default-fstype')).toBe(traits.blockFs ? 'ext4' : undefined);
      if (w.kind === 'DaemonSet') {
        // Distributed provisioning: each node creates the volumes of the pods placed on it.
        expect(args).toContain('--node-deployment');
        expect(args).toContain('--node-deployment-immediate-binding=false');
        expect(args).toContain('--strict-topology');
        expect(args.includes('--enable-capacity')).toBe(traits.hostLocal);
        const env = Object.fromEntries(
          (p.env as Doc[]).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]),
        );
        expect(env).toMatchObject({ NODE_NAME: 'spec.nodeName', POD_NAME: 'metadata.name' });
      }
    });

    it('elects one leader per sidecar in the controller, none on the nodes', () => {
      for (const c of sidecars.filter(
        (x) => sidecarOf(x) !== 'livenessprobe' && sidecarOf(x) !== 'csi-node-driver-registrar',
      )) {
        expect((c.args as string[]).includes('--leader-election'), c.name).toBe(w.kind === 'Deployment');
      }
    });

    it("probes liveness through livenessprobe's port", () => {
      const lp = sidecars.find((c) => sidecarOf(c) === 'livenessprobe')!;
      const port = Number(argValue(lp.args, '--health-port'));
      const c = stowage[0]!;
      const probe = c.livenessProbe.httpGet;
      const named = (c.ports as Doc[]).find((p) => p.name === probe.port || p.containerPort === probe.port);
      expect(named?.containerPort).toBe(port);
      expect(probe.path).toBe('/healthz');
    });

    it('runs under a service account bound to the roles of its sidecars', () => {
      const sa = w.pod.serviceAccountName;
      expect(
        all.some((d) => d.kind === 'ServiceAccount' && d.metadata.name === sa),
        sa,
      ).toBe(true);
      const bound = (kind: string) =>
        all
          .filter((d) => d.kind === kind)
          .filter((b) => (b.subjects as Doc[]).some((s) => s.kind === 'ServiceAccount' && s.name === sa))
          .map((b) => b.roleRef.name);
      const clusterRoles = bound('ClusterRoleBinding');
      for (const r of clusterRoles) {
        expect(
          all.some((d) => d.kind === 'ClusterRole' && d.metadata.name === r),
          r,
        ).toBe(true);
      }
      for (const c of sidecars) {
        const role = SIDECAR_ROLES[sidecarOf(c)!];
        if (role) expect(clusterRoles, `${c.name} needs ${role}`).toContain(role);
      }
      if (sidecars.some((c) => (c.args as string[]).includes('--leader-election'))) {
        const roles = bound('RoleBinding');
        const leases = all.filter(
          (d) =>
            d.kind === 'Role' &&
            roles.includes(d.metadata.name) &&
            (d.rules as Doc[]).some((r) => r.resources.includes('leases')),
        );
        expect(leases, 'leader election needs leases').toHaveLength(1);
      }
    });

    it('gets AWS credentials from the optional stowage-aws Secret exactly when the driver calls AWS', () => {
      const c = stowage[0]!;
      const refs = ((c.envFrom ?? []) as Doc[]).map((e) => e.secretRef);
      expect(refs).toEqual(traits.usesAws ? [{ name: 'stowage-aws', optional: true }] : []);
    });
  });

  describe('the node DaemonSet', () => {
    const ds = loads.find((w) => w.kind === 'DaemonSet')!;
    const stowage = ds.containers.find(isStowage)!;
    const hostPathOf = (volume: string) =>
      (ds.pod.volumes as Doc[]).find((v) => v.name === volume)?.hostPath?.path as string | undefined;

    it(`registers the socket with kubelet at ${KUBELET_DIR}/plugins/${name}/`, () => {
      const reg = ds.containers.find((c) => sidecarOf(c) === 'csi-node-driver-registrar')!;
      const path = argValue(reg.args, '--kubelet-registration-path');
      expect(path).toBe(`${KUBELET_DIR}/plugins/${name}/csi.sock`);
      // What kubelet will dial is where stowage listens: the plugin dir's host path + the socket.
      const at = volumePath(stowage, socketOf(stowage)!)!;
      expect(posix.join(hostPathOf(at.volume)!, at.rest)).toBe(path);
      const registration = volumePath(reg, '/registration')!;
      expect(hostPathOf(registration.volume)).toMatch(new RegExp(`^${KUBELET_DIR}/plugins_registry/?$`));
      // The registrar's own liveness check names the same path.
      expect(reg.livenessProbe.exec.command).toContain(`--kubelet-registration-path=${path}`);
    });

    it("mounts kubelet's directory and stowage's data dir with Bidirectional propagation, privileged", () => {
      const kubeletDir = argValue(stowageArgv(stowage).flags, '--kubelet-dir') ?? KUBELET_DIR;
      expect(kubeletDir).toBe(KUBELET_DIR);
      const mounts = stowage.volumeMounts as Doc[];
      const kubelet = mounts.find((m) => m.mountPath === kubeletDir);
      expect(kubelet?.mountPropagation).toBe('Bidirectional');
      expect(hostPathOf(kubelet!.name)).toBe(kubeletDir);
      const data = mounts.find((m) => m.mountPath === '/var/lib/stowage');
      expect(data?.mountPropagation).toBe('Bidirectional');
      expect(hostPathOf(data!.name)).toBe('/var/lib/stowage');
      expect(stowage.securityContext?.privileged).toBe(true);
      // Only a privileged container may propagate mounts back to the host.
      for (const c of ds.containers.filter((x) => !isStowage(x))) {
        for (const m of c.volumeMounts ?? [])
          expect(m.mountPropagation, `${c.name}: ${m.name}`).toBeUndefined();
      }
      expect(mounts.some((m) => m.mountPath === '/dev')).toBe(traits.usesDevices);
    });

    it("uses the node's name as the host id, and sees the host's processes", () => {
      const env = (stowage.env as Doc[]).find((e) => e.name === 'STOWAGE_HOST_ID');
      expect(env?.valueFrom?.fieldRef?.fieldPath).toBe('spec.nodeName');
      expect(ds.pod.hostPID).toBe(true);
    });

    it("is on the host's network where the mounts or instance metadata need it", () => {
      // NFS mounts belong to the mounting process's network namespace; ebs asks IMDS for the zone.
      expect(ds.pod.hostNetwork ?? false).toBe(traits.multiNode || traits.zonal);
      if (ds.pod.hostNetwork) expect(ds.pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    });
  });
});

describe('all CSI manifests together', () => {
  const all = DRIVER_NAMES.flatMap((d) => bundles[d]);

  it('pin one release of each sidecar everywhere', () => {
    const versions = new Map<string, Set<string>>();
    for (const c of workloads(all).flatMap((w) => w.containers)) {
      const s = sidecarOf(c);
      if (!s) continue;
      expect(Object.keys(SIDECAR_ROLES)).toContain(s);
      versions.set(s, (versions.get(s) ?? new Set()).add(c.image));
    }
    for (const [s, images] of versions) expect([...images], s).toHaveLength(1);
  });

  it('give each pod on the host network its own health port (one node runs every driver)', () => {
    const ports = workloads(all)
      .filter((w) => w.pod.hostNetwork)
      .flatMap((w) =>
        w.containers.filter(isStowage).flatMap((c) => (c.ports as Doc[]).map((p) => p.containerPort)),
      );
    expect(new Set(ports).size).toBe(ports.length);
  });

  it('name every workload differently', () => {
    const names = workloads(all).map((w) => w.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it('define each shared object the same way in every bundle', () => {
    const seen = new Map<string, string>();
    for (const d of all) {
      const key = `${d.kind}/${d.metadata.namespace ?? ''}/${d.metadata.name}`;
      const body = JSON.stringify(d);
      expect(seen.get(key) ?? body, key).toBe(body);
      seen.set(key, body);
    }
  });

  it('are all in the csi folder (nothing outside it is a resource)', () => {
    for (const d of DRIVER_NAMES) {
      const [k] = parseFile(join(CSI, d, 'kustomization.yaml'));
      for (const r of k!.resources as string[]) {
        expect(relative(CSI, join(CSI, d, r)).startsWith('..'), r).toBe(false);
      }
    }
  });
});
