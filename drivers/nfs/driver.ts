import { posix } from 'node:path';
import {
  type DoctorCheck,
  type Driver,
  type DriverContext,
  isNfsVersionOption,
  type MountSpec,
  mergeMountOptions,
  type ParsedOptions,
  type ProvisionResult,
  parseDuration,
  parseOptions,
  provisionDir,
  recordedOptions,
  removeDir,
  type ShareLocation,
  StowageError,
  subdirFor,
  type VolumeInput,
  type VolumeRecord,
} from '../../src/index.js';
import type { NfsConfig } from './config.js';
import { NFS_OPTION_SPECS, type NfsOptions } from './options.js';

/**
 * A subdirectory per volume on a shared export (or, with `export`, the export itself). Create
 * mounts the share root on a private staging directory to make the subdirectory; Mount mounts
 * server:/share/subdir once per host; Remove applies the recorded policy on the server.
 */
export class NfsDriver implements Driver {
  readonly name = 'nfs';
  readonly scope = 'global' as const;
  readonly needsAttach = false;
  readonly lazyUnmount = true;
  readonly optionSpecs = NFS_OPTION_SPECS;

  constructor(
    private readonly ctx: DriverContext,
    private readonly cfg: NfsConfig,
  ) {}

  parseOptions(raw: Record<string, string>): ParsedOptions<NfsOptions> {
    const parsed = parseOptions<NfsOptions>(this.name, this.optionSpecs, raw, {
      server: this.cfg.server,
      nfsVersion: this.cfg.nfsVersion,
      onRemove: this.cfg.onRemove,
      mode: this.cfg.mode,
      mountTimeout: this.cfg.mountTimeout,
      // share comes from config only when the volume does not name an export of its own
      ...(raw.export === undefined ? { share: this.cfg.share } : {}),
    });
    const o = parsed.values;
    const given = new Set(parsed.given);
    const bad = (msg: string) => new StowageError('INVALID_ARGUMENT', `driver nfs: ${msg}`);
    if (!o.server) throw bad('no NFS server: give -o server=HOST, or set nfs.server in the config');
    if (o.export !== undefined && given.has('share'))
      throw bad('give either share (a subdirectory per volume) or export, not both');
    if (o.export === undefined && o.share === undefined) {
      throw bad(
        'no share: give -o share=/exported/path (or export=/path to mount an export as it is), or set nfs.share in the config',
      );
    }
    if (o.export !== undefined) {
      if (o.subdir !== undefined) throw bad('export mounts the export itself; subdir needs share instead');
      if (given.has('onRemove') && o.onRemove !== 'retain') {
        throw bad(
          `onRemove=${o.onRemove} would remove the whole export ${o.export}; only retain is allowed with export`,
        );
      }
      o.onRemove = 'retain';
    }
    const versionInOptions = (o.mountOptions ?? []).find(isNfsVersionOption);
    if (versionInOptions) {
      const v = versionInOptions.split('=')[1] ?? '';
      if (given.has('nfsVersion') && v !== o.nfsVersion) {
        throw bad(
          `mountOptions say ${versionInOptions} but nfsVersion=${o.nfsVersion}; give the version once`,
        );
      }
      if (!['3', '4', '4.0', '4.1', '4.2'].includes(v))
        throw bad(`unsupported NFS version in ${versionInOptions}`);
      o.nfsVersion = (v === '4.0' ? '4' : v) as NfsOptions['nfsVersion'];
      o.mountOptions = (o.mountOptions ?? []).filter((m) => m !== versionInOptions);
    }
    return parsed;
  }

  async provision(volume: VolumeInput): Promise<ProvisionResult> {
    const o = recordedOptions<NfsOptions>(volume);
    if (o.export !== undefined) {
      return { adopted: true, removePolicy: 'retain', fields: { server: o.server, remotePath: o.export } };
    }
    const subdir = subdirFor(o.subdir, volume.name);
    const remotePath = posix.join(o.share!, subdir);
    const fields = { server: o.server, remotePath, share: o.share, subdir };
    const dir = { mode: o.mode, uid: o.uid, gid: o.gid };
    const made = await provisionDir(this.ctx, this.shareOf(o), subdir, dir, volume);
    if (made.adopted) {
      // Existing data: take it over and keep it unless the user asked for delete explicitly.
      const policy = volume.givenOptions.includes('onRemove') ? o.onRemove : 'retain';
      this.ctx.log.warn({ volume: volume.name, remotePath, policy }, 'adopting an existing directory');
      return { adopted: true, removePolicy: policy, fields };
    }
    return { adopted: false, removePolicy: o.onRemove, fields };
  }

  async destroy(volume: VolumeRecord): Promise<void> {
    const o = recordedOptions<NfsOptions>(volume);
    const subdir = typeof volume.fields.subdir === 'string' ? volume.fields.subdir : undefined;
    if (volume.removePolicy === 'retain' || subdir === undefined) {
      this.ctx.log.info({ volume: volume.name, policy: 'retain' }, 'directory kept on the server');
      return;
    }
    const archived = await removeDir(this.ctx, this.shareOf(o), subdir, volume.removePolicy);
    if (archived) this.ctx.log.info({ volume: volume.name, archived }, 'directory archived');
  }

  /** An interrupted Create: its directory goes only when it noted making it (never an adopted one). */
  async abandon(volume: VolumeRecord): Promise<void> {
    const o = recordedOptions<NfsOptions>(volume);
    if (volume.fields.madeDir !== true || o.export !== undefined) return;
    await removeDir(this.ctx, this.shareOf(o), subdirFor(o.subdir, volume.name), 'delete');
  }

  mountSpec(volume: VolumeRecord): MountSpec {
    const o = recordedOptions<NfsOptions>(volume);
    const remotePath = String(volume.fields.remotePath ?? o.export);
    return {
      kind: 'nfs',
      source: `${o.server}:${remotePath}`,
      server: o.server,
      fsType: fsTypeOf(o),
      mountOptions: this.mountOptions(o),
      timeoutMs: parseDuration(o.mountTimeout),
    };
  }

  describe(volume: VolumeRecord): Record<string, unknown> {
    const o = recordedOptions<NfsOptions>(volume);
    return {
      server: o.server,
      remotePath: volume.fields.remotePath ?? o.export,
      nfsVersion: o.nfsVersion,
      mountOptions: this.mountOptions(o).join(','),
    };
  }

  async doctor(): Promise<DoctorCheck[]> {
    if (!this.cfg.server) {
      return [
        {
          name: 'nfs: server',
          ok: true,
          detail: 'no default server configured (volumes must give -o server=)',
        },
      ];
    }
    const port = portOf(this.cfg.mountOptions);
    const res = await this.ctx.probeTcp(this.cfg.server, port, 3000);
    return [
      {
        name: 'nfs: server',
        ok: res.ok,
        detail: `${this.cfg.server}:${port} ${res.detail}${res.ok ? '' : '; NFS volumes cannot be created or mounted until it answers'}`,
      },
    ];
  }

  /** Configured defaults, then the volume's own options over them (same key: the volume wins). */
  private mountOptions(o: NfsOptions): string[] {
    const merged = mergeMountOptions(this.cfg.mountOptions, o.mountOptions ?? []);
    return [`vers=${o.nfsVersion}`, ...merged.filter((opt) => !isNfsVersionOption(opt))];
  }

  private shareOf(o: NfsOptions): ShareLocation {
    return {
      server: o.server,
      path: o.share!,
      fsType: fsTypeOf(o),
      mountOptions: this.mountOptions(o),
      timeoutMs: parseDuration(o.mountTimeout),
    };
  }
}

function fsTypeOf(o: NfsOptions): 'nfs' | 'nfs4' {
  return o.nfsVersion === '3' ? 'nfs' : 'nfs4';
}

function portOf(options: readonly string[]): number {
  const p = options.find((o) => o.toLowerCase().startsWith('port='));
  const n = p ? Number(p.split('=')[1]) : 2049;
  return Number.isInteger(n) && n > 0 ? n : 2049;
}
