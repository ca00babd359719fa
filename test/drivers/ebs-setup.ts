import { mkdir, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { pino } from 'pino';
import { expect } from 'vitest';
import { ebsDriver } from '../../drivers/ebs/index.js';
import { type CreateVolumeInput, type Ec2Api, SdkEc2, type SnapshotQuery } from '../../src/cloud/ec2.js';
import { StaticIdentity } from '../../src/cloud/imds.js';
import type { Driver } from '../../src/core/driver.js';
import type { HostRecord, MountRecord } from '../../src/state/store.js';
import { FakeEc2 } from '../fakes/aws/ec2-endpoint.js';
import { fakeEndpointOptions } from '../helpers/aws-sdk.js';
import { buildDriver, driverContextFromConfig } from '../helpers/driver-context.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js';

/**
 * The ebs driver's test composition, shared by its own tests (ebs-driver.test.ts) and the driver
 * contract: the driver on its own (no VolumeManager) against the suite's one EC2
 * (test/fakes/aws/ec2-endpoint.ts) through the real AWS SDK (SdkEc2). State moves on in time as
 * EC2's does (creating, attaching, detaching, busy), the block device shows up a moment after the
 * attachment says attached (a link in a temp dev dir to a block device node made with mknod,
 * instead of a loop device), and a new volume may be missing from DescribeVolumes for a moment.
 * `ec2` only records the calls the driver makes at the seam; every answer comes from the endpoint.
 * The SDK needs AWS credentials in the environment (useTestAwsCredentials in the test file).
 */

/** This host's instance (host-a), another stowage host's (host-b), and one no stowage host has. */
export const ME = 'i-0aaaaaaaaaaaaaaa1';
export const OTHER = 'i-0bbbbbbbbbbbbbbb2';
export const STRANGER = 'i-0ccccccccccccccc3';
export const AZ = 'us-east-1a';
export const CREATED_AT = '2024-05-01T10:00:00.000Z';

interface Call {
  op: keyof Ec2Api;
  args: unknown[];
}

/** The real SdkEc2 with a record of the calls made through it (for assertions only). */
export class RecordingEc2 implements Ec2Api {
  readonly calls: Call[] = [];
  constructor(readonly sdk: SdkEc2) {}

  callsOf(op: keyof Ec2Api): unknown[][] {
    return this.calls.filter((c) => c.op === op).map((c) => c.args);
  }
  private rec<T>(op: keyof Ec2Api, args: unknown[], run: () => Promise<T>): Promise<T> {
    this.calls.push({ op, args });
    return run();
  }
  createVolume(i: CreateVolumeInput) {
    return this.rec('createVolume', [i], () => this.sdk.createVolume(i));
  }
  describeVolume(id: string) {
    return this.rec('describeVolume', [id], () => this.sdk.describeVolume(id));
  }
  findVolumesByTag(key: string, value: string) {
    return this.rec('findVolumesByTag', [key, value], () => this.sdk.findVolumesByTag(key, value));
  }
  deleteVolume(id: string) {
    return this.rec('deleteVolume', [id], () => this.sdk.deleteVolume(id));
  }
  attachVolume(id: string, instanceId: string, device: string) {
    return this.rec('attachVolume', [id, instanceId, device], () =>
      this.sdk.attachVolume(id, instanceId, device),
    );
  }
  detachVolume(id: string, instanceId: string, opts?: { force?: boolean }) {
    return this.rec('detachVolume', [id, instanceId, ...(opts ? [opts] : [])], () =>
      this.sdk.detachVolume(id, instanceId, opts),
    );
  }
  describeInstance(id: string) {
    return this.rec('describeInstance', [id], () => this.sdk.describeInstance(id));
  }
  findInstanceByPrivateDnsName(name: string) {
    return this.rec('findInstanceByPrivateDnsName', [name], () =>
      this.sdk.findInstanceByPrivateDnsName(name),
    );
  }
  describeSnapshot(id: string) {
    return this.rec('describeSnapshot', [id], () => this.sdk.describeSnapshot(id));
  }
  findSnapshotByTag(key: string, value: string) {
    return this.rec('findSnapshotByTag', [key, value], () => this.sdk.findSnapshotByTag(key, value));
  }
  createSnapshot(volumeId: string, description: string, tags: Record<string, string>) {
    return this.rec('createSnapshot', [volumeId, description, tags], () =>
      this.sdk.createSnapshot(volumeId, description, tags),
    );
  }
  deleteSnapshot(id: string) {
    return this.rec('deleteSnapshot', [id], () => this.sdk.deleteSnapshot(id));
  }
  findSnapshots(query: SnapshotQuery) {
    return this.rec('findSnapshots', [query], () => this.sdk.findSnapshots(query));
  }
  modifyVolume(id: string, sizeGiB: number) {
    return this.rec('modifyVolume', [id, sizeGiB], () => this.sdk.modifyVolume(id, sizeGiB));
  }
  describeVolumeModification(id: string) {
    return this.rec('describeVolumeModification', [id], () => this.sdk.describeVolumeModification(id));
  }
}

/** The shared state as the driver sees it: hosts and their mounts. */
export class FakeState {
  readonly hosts: HostRecord[] = [];
  readonly mounts: MountRecord[] = [];
  /** Hosts with a live lease; undefined: a store without leases (every host counts as live). */
  live: string[] | undefined;

  host(id: string, instanceId: string): void {
    this.hosts.push({ id, identity: { instanceId, availabilityZone: AZ }, lastSeen: CREATED_AT });
  }

  mount(volume: string, host: string, refs: Record<string, number>): void {
    this.mounts.push({
      volume,
      host,
      mountpoint: `/var/lib/stowage/volumes/${volume}`,
      refs,
      state: 'mounted',
      updatedAt: CREATED_AT,
    });
  }
}

export interface EbsSetup {
  /** The temp directory holding the fake /dev, by-id links, images and the data directory. */
  dir: string;
  devDir: string;
  /** Real path of the block device node every attached volume "is". */
  blockNode: string;
  /** The EC2 endpoint (state, request log, failure injection). */
  fake: FakeEc2;
  /** The driver's EC2 seam: the real SdkEc2 talking to `fake`, recording each call. */
  ec2: RecordingEc2;
  /** The hosts and mounts the driver sees in the store: host-a (ME) and host-b (OTHER). */
  state: FakeState;
  /** A new driver on this setup, `ebs` over the config below; its log lines (debug and up) in `logLines`. */
  driver(ebs?: Record<string, unknown>): { driver: Driver; logLines: Record<string, unknown>[] };
  /** Stops the endpoint (which must have seen no error of its own) and removes the directory. */
  cleanup(): Promise<void>;
}

export interface EbsSetupOptions {
  /**
   * How long a deleted volume stays `deleting` (default a minute: longer than any test, which can
   * then check that state; at 20 ms a loaded machine could pass it before the test looks).
   */
  deleteMs?: number;
}

export async function setupEbs(o: EbsSetupOptions = {}): Promise<EbsSetup> {
  const dir = await makeTempDir('ebs');
  const devDir = join(dir, 'dev');
  const byIdDir = join(dir, 'by-id');
  await mkdir(devDir);
  await execa('mknod', [join(dir, 'blk'), 'b', '7', '200']); // loop major, a minor nobody uses
  const blockNode = await realpath(join(dir, 'blk'));
  const fake = await FakeEc2.start({
    stateDelayMs: 20,
    deviceDelayMs: 60,
    consistencyDelayMs: 60,
    delays: { delete: o.deleteMs ?? 60_000 },
    blockDevices: { imageDir: join(dir, 'images'), devDir, byIdDir, node: blockNode },
  });
  fake.addInstance({ instanceId: ME, availabilityZone: AZ });
  fake.addInstance({ instanceId: OTHER, availabilityZone: AZ, blockDevices: false });
  fake.addInstance({ instanceId: STRANGER, availabilityZone: AZ, blockDevices: false });
  const ec2 = new RecordingEc2(new SdkEc2(fakeEndpointOptions(fake.url)));
  const state = new FakeState();
  state.host('host-a', ME);
  state.host('host-b', OTHER);
  return {
    dir,
    devDir,
    blockNode,
    fake,
    ec2,
    state,
    driver: (ebs = {}) => {
      const logLines: Record<string, unknown>[] = [];
      const { ctx, config } = driverContextFromConfig(
        'ebs',
        {
          dataDir: join(dir, 'data'),
          hostId: 'host-a',
          timeouts: { deviceWaitMs: 300 },
          ebs: {
            devDir,
            byIdDir,
            sysBlockDir: join(dir, 'sys-block'),
            createTimeout: '5s',
            attachTimeout: '5s',
            ...ebs,
          },
        },
        {
          log: pino({ level: 'debug' }, { write: (line: string) => logLines.push(JSON.parse(line)) }),
          state: {
            hosts: async () => structuredClone(state.hosts),
            mounts: async (volume) => structuredClone(state.mounts.filter((m) => m.volume === volume)),
            liveHosts: async () => (state.live ? new Set(state.live) : undefined),
          },
          cloud: {
            ec2,
            identity: new StaticIdentity({ instanceId: ME, availabilityZone: AZ, region: 'us-east-1' }),
          },
        },
      );
      return { driver: buildDriver(ebsDriver, ctx, config), logLines };
    },
    cleanup: async () => {
      await fake.stop();
      expect(fake.errors).toEqual([]);
      await removeTempDir(dir); // the device node and the symlinks with it
    },
  };
}
