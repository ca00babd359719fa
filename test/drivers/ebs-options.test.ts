import { describe, expect, it } from 'vitest';
import { ebsDriver } from '../../drivers/ebs/index.js';
import type { StowageError } from '../../src/base/errors.js';
import type { Ec2Api } from '../../src/cloud/ec2.js';
import type { IdentitySource } from '../../src/cloud/imds.js';
import type { CloudClients, Driver } from '../../src/core/driver.js';
import { buildDriver, driverContextFromConfig } from '../helpers/driver-context.js';
import { thrown } from '../helpers/failure.js';
import { forbidden } from '../helpers/forbidden.js';

/**
 * EbsDriver.parseOptions through the driver factory, with the real config schema's defaults and a
 * cloud that records calls: parsing options never talks to AWS.
 */

/** The ebs driver from the config (`ebs` over the schema's defaults), with the AWS clients `cloud` or none. */
function build(ebs: Record<string, unknown>, cloud: CloudClients | undefined): Driver {
  const { ctx, config } = driverContextFromConfig(
    'ebs',
    { dataDir: '/nonexistent/stowage', hostId: 'h1', ebs },
    cloud ? { cloud } : {},
  );
  return buildDriver(ebsDriver, ctx, config);
}

/** The AWS clients, which option parsing must not use: it is local. */
let cloud: ReturnType<typeof forbidden<Ec2Api & IdentitySource>>;
function driver(ebs: Record<string, unknown> = {}): Driver {
  cloud = forbidden<Ec2Api & IdentitySource>('option parsing called AWS');
  return build(ebs, { ec2: cloud, identity: cloud });
}

function parse(raw: Record<string, string>, ebs: Record<string, unknown> = {}) {
  return driver(ebs).parseOptions(raw);
}

/** What parseOptions throws for `raw`: INVALID_ARGUMENT, without a word to AWS; fails the test when it returns. */
function refusal(raw: Record<string, string>, ebs: Record<string, unknown> = {}): StowageError {
  const err = thrown(() => parse(raw, ebs));
  expect(err.code, `not INVALID_ARGUMENT: ${err.message}`).toBe('INVALID_ARGUMENT');
  expect(cloud.calls).toEqual([]);
  return err;
}

const SNAP = 'snap-0123456789abcdef0';
const VOL = 'vol-0123456789abcdef0';

describe('ebs driver construction', () => {
  it('refuses to run without the AWS clients', () => {
    const err = thrown(() => build({}, undefined));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe('the ebs driver needs the AWS clients (runtime wiring)');
  });

  it('is a global, attachable, never lazily unmounted driver', () => {
    const d = driver();
    expect(d.name).toBe('ebs');
    expect(d.scope).toBe('global');
    expect(d.needsAttach).toBe(true);
    expect(d.lazyUnmount).toBe(false);
  });
});

describe('ebs options: defaults', () => {
  it('fills in gp3, ext4, the config default size, tag name Name and preempt off', () => {
    const parsed = parse({});
    expect(parsed.values).toEqual({
      size: 10,
      type: 'gp3',
      fsType: 'ext4',
      snapshotTagName: 'Name',
      preempt: false,
    });
    expect(parsed.given).toEqual([]);
    expect(cloud.calls).toEqual([]);
  });

  it("takes the defaults from the daemon's ebs config", () => {
    const parsed = parse({}, { defaultSizeGiB: 200, defaultType: 'st1', defaultFsType: 'xfs' });
    expect(parsed.values).toMatchObject({ size: 200, type: 'st1', fsType: 'xfs' });
    expect(parsed.given).toEqual([]);
  });

  it.each([
    [{ snapshotId: SNAP }, { snapshotId: SNAP }],
    [{ snapshotTag: 'nightly' }, { snapshotTag: 'nightly' }],
    [{ volumeId: VOL }, { volumeId: VOL }],
  ])('gives no default size when the volume comes from something existing: %j', (raw, want) => {
    const { values } = parse(raw);
    expect(values).toMatchObject(want);
    expect(values).not.toHaveProperty('size');
  });

  it('keeps an explicit size next to a snapshot', () => {
    expect(parse({ snapshotId: SNAP, size: '50' }).values).toMatchObject({ snapshotId: SNAP, size: 50 });
  });
});

describe('ebs options: values and aliases', () => {
  it('accepts Local Zone names as availability zones', () => {
    expect(parse({ availabilityZone: 'us-west-2-lax-1a' }).values.availabilityZone).toBe('us-west-2-lax-1a');
  });

  it('accepts every option and converts it', () => {
    const parsed = parse({
      size: '100',
      type: 'gp3',
      iops: '6000',
      throughput: '250',
      encrypted: 'yes',
      kmsKeyId: 'alias/team',
      availabilityZone: 'eu-west-1b',
      fsType: 'xfs',
      tags: 'team=storage, cost-center = 42 ,,env=a=b',
      onRemove: 'retain',
      preempt: '1',
    });
    expect(parsed.values).toEqual({
      size: 100,
      type: 'gp3',
      iops: 6000,
      throughput: 250,
      encrypted: true,
      kmsKeyId: 'alias/team',
      availabilityZone: 'eu-west-1b',
      fsType: 'xfs',
      tags: { team: 'storage', 'cost-center': '42', env: 'a=b' },
      onRemove: 'retain',
      preempt: true,
      snapshotTagName: 'Name',
    });
  });

  it('accepts volumeType, snapshotID and volumeID as aliases, in any case', () => {
    expect(parse({ volumeType: 'gp2' }).values).toMatchObject({ type: 'gp2' });
    expect(parse({ VOLUMETYPE: 'sc1', size: '125' }).values).toMatchObject({ type: 'sc1' });
    expect(parse({ snapshotID: SNAP }).values).toMatchObject({ snapshotId: SNAP });
    expect(parse({ volumeID: VOL }).values).toMatchObject({ volumeId: VOL });
    expect(parse({ volumeid: VOL }).values).toMatchObject({ volumeId: VOL });
  });

  it('reports the canonical names of the options given, not the defaults', () => {
    expect(parse({ volumeType: 'io2', IOPS: '5000', size: '100' }).given.sort()).toEqual([
      'iops',
      'size',
      'type',
    ]);
    expect(parse({ snapshotID: SNAP, fsType: 'ext4' }).given.sort()).toEqual(['fsType', 'snapshotId']);
    expect(parse({ volumeID: VOL, onRemove: 'delete' }).given.sort()).toEqual(['onRemove', 'volumeId']);
  });

  it('adopts a volume with fsType, onRemove and preempt, which shape nothing in EC2', () => {
    const { values } = parse({ volumeId: VOL, fsType: 'xfs', onRemove: 'delete', preempt: 'true' });
    expect(values).toMatchObject({ volumeId: VOL, fsType: 'xfs', onRemove: 'delete', preempt: true });
  });

  it('needs no iops for io1 when it adopts an existing volume', () => {
    expect(parse({ volumeId: VOL }, { defaultType: 'io1' }).values).toMatchObject({ volumeId: VOL });
  });

  it.each([
    [{ type: 'io1', iops: '100', size: '4' }],
    [{ type: 'io2', iops: '64000', size: '4' }],
    [{ type: 'gp3', iops: '3000' }],
    [{ type: 'gp3', iops: '16000', throughput: '1000' }],
    // Above the 16,000 that was refused here once: the shipped SDK documents 80,000 for gp3, and
    // ceilings are EC2's to enforce (its refusal is mapped, see ebs-driver.test.ts).
    [{ type: 'gp3', iops: '16001' }],
    [{ type: 'gp3', iops: '80000', throughput: '2000', size: '65536' }],
    [{ type: 'st1', size: '125' }],
    [{ type: 'sc1', size: '16384' }],
    [{ type: 'standard', size: '1' }],
    [{ kmsKeyId: 'alias/k', encrypted: 'true' }],
  ])('accepts %j', (raw) => {
    expect(() => parse(raw)).not.toThrow();
  });
});

describe('ebs options: refused combinations', () => {
  it.each([
    [{ type: 'gp2', iops: '3000' }, 'driver ebs: iops cannot be set for type gp2 (only gp3, io1, io2)'],
    [
      { type: 'st1', size: '500', iops: '3000' },
      'driver ebs: iops cannot be set for type st1 (only gp3, io1, io2)',
    ],
    [{ type: 'io1' }, 'driver ebs: type io1 needs iops'],
    [{ type: 'io2', size: '100' }, 'driver ebs: type io2 needs iops'],
    [{ iops: '2999' }, "driver ebs: iops=2999 is below gp3's minimum of 3000"],
    [
      { type: 'io1', iops: '1000', throughput: '200' },
      'driver ebs: throughput can only be set for gp3, not io1',
    ],
    [{ type: 'gp2', throughput: '200' }, 'driver ebs: throughput can only be set for gp3, not gp2'],
    [{ kmsKeyId: 'alias/k', encrypted: 'false' }, 'driver ebs: kmsKeyId needs encrypted=true'],
    [{ kmsKeyId: 'alias/k', encrypted: 'no' }, 'driver ebs: kmsKeyId needs encrypted=true'],
    [{ snapshotId: SNAP, volumeId: VOL }, 'driver ebs: give only one of snapshotId, volumeId'],
    [{ snapshotTag: 'x', snapshotID: SNAP }, 'driver ebs: give only one of snapshotId, snapshotTag'],
    [
      { volumeId: VOL, snapshotTag: 'x', snapshotId: SNAP },
      'driver ebs: give only one of snapshotId, snapshotTag, volumeId',
    ],
    [
      { volumeId: VOL, size: '20' },
      'driver ebs: volumeId adopts an existing volume as it is; size cannot be set',
    ],
    [
      { volumeID: VOL, tags: 'a=b', volumeType: 'gp2', encrypted: 'true' },
      'driver ebs: volumeId adopts an existing volume as it is; type, encrypted, tags cannot be set',
    ],
    [
      { volumeId: VOL, availabilityZone: 'us-east-1a' },
      'driver ebs: volumeId adopts an existing volume as it is; availabilityZone cannot be set',
    ],
    [{ type: 'st1' }, 'driver ebs: size=10 GiB is below the minimum of 125 GiB for st1'],
    [{ type: 'st1', size: '124' }, 'driver ebs: size=124 GiB is below the minimum of 125 GiB for st1'],
    [{ type: 'sc1', size: '100' }, 'driver ebs: size=100 GiB is below the minimum of 125 GiB for sc1'],
    [{ type: 'io1', iops: '100', size: '3' }, 'driver ebs: size=3 GiB is below the minimum of 4 GiB for io1'],
  ])('refuses %j', (raw, message) => {
    expect(refusal(raw).message).toBe(message);
  });

  it('checks the minimum size against the default size of the config', () => {
    expect(refusal({}, { defaultType: 'sc1' }).message).toBe(
      'driver ebs: size=10 GiB is below the minimum of 125 GiB for sc1',
    );
    expect(parse({}, { defaultType: 'sc1', defaultSizeGiB: 125 }).values).toMatchObject({ size: 125 });
  });
});

describe('ebs options: malformed values', () => {
  it.each([
    [
      { snapshotId: 'snap-XYZ' },
      'option snapshotId="snap-XYZ" for driver ebs: must be a snapshot id such as snap-0123456789abcdef0 (create from this snapshot)',
    ],
    [
      { snapshotID: 'snapshot-1' },
      'option snapshotID="snapshot-1" for driver ebs: must be a snapshot id such as snap-0123456789abcdef0 (create from this snapshot)',
    ],
    [
      { volumeId: 'vol-1' },
      'option volumeId="vol-1" for driver ebs: must be a volume id such as vol-0123456789abcdef0 (adopt this existing volume)',
    ],
    [
      { volumeID: 'i-0123456789abcdef0' },
      'option volumeID="i-0123456789abcdef0" for driver ebs: must be a volume id such as vol-0123456789abcdef0 (adopt this existing volume)',
    ],
    [
      { tags: 'aws:foo=bar' },
      'option tags="aws:foo=bar" for driver ebs: tag "aws:foo=bar" must be key=value (no aws: or stowage.io/ keys) (extra tags: k=v,k2=v2)',
    ],
    [
      { tags: 'team=a,AWS:cloudformation:stack-name=x' },
      'option tags="team=a,AWS:cloudformation:stack-name=x" for driver ebs: tag "AWS:cloudformation:stack-name=x" must be key=value (no aws: or stowage.io/ keys) (extra tags: k=v,k2=v2)',
    ],
    [
      { tags: 'stowage.io/volume=other' },
      'option tags="stowage.io/volume=other" for driver ebs: tag "stowage.io/volume=other" must be key=value (no aws: or stowage.io/ keys) (extra tags: k=v,k2=v2)',
    ],
    [
      { tags: 'novalue' },
      'option tags="novalue" for driver ebs: tag "novalue" must be key=value (no aws: or stowage.io/ keys) (extra tags: k=v,k2=v2)',
    ],
    [
      { tags: '=v' },
      'option tags="=v" for driver ebs: tag "=v" must be key=value (no aws: or stowage.io/ keys) (extra tags: k=v,k2=v2)',
    ],
    [{ size: '10G' }, 'option size="10G" for driver ebs: must be a whole number of GiB (size in GiB)'],
    [{ size: '0' }, 'option size="0" for driver ebs: must be between 1 and 65536 GiB (size in GiB)'],
    [
      { type: 'gp4' },
      'option type="gp4" for driver ebs: must be one of gp3, gp2, io1, io2, st1, sc1, standard (EBS volume type, gp3 by default)',
    ],
    [
      { encrypted: 'maybe' },
      'option encrypted="maybe" for driver ebs: must be true or false (encrypt the volume)',
    ],
    [
      { availabilityZone: 'us-east-1' },
      'option availabilityZone="us-east-1" for driver ebs: must be an availability zone such as us-east-1a (availability zone (default this host\'s))',
    ],
    [
      { fsType: 'btrfs' },
      'option fsType="btrfs" for driver ebs: must be one of ext4, xfs (filesystem made at first mount when the volume is blank)',
    ],
    [
      { onRemove: 'archive' },
      'option onRemove="archive" for driver ebs: must be one of delete, retain (delete (default for created volumes) or retain (default for adopted ones))',
    ],
  ])('refuses %j', (raw, message) => {
    expect(refusal(raw).message).toBe(message);
  });

  it('refuses an unknown option and lists the valid ones with their aliases', () => {
    expect(refusal({ color: 'blue' }).message).toBe(
      'unknown option "color" for driver ebs; valid options: size, type (alias volumeType), iops, throughput, ' +
        'encrypted, kmsKeyId, snapshotId (alias snapshotID), snapshotTag, snapshotTagName, ' +
        'volumeId (alias volumeID), availabilityZone, fsType, tags, onRemove, preempt',
    );
  });

  it('refuses an option given twice through an alias', () => {
    expect(refusal({ type: 'gp2', volumeType: 'gp3' }).message).toBe(
      'option "volumeType" repeats "type" (both mean type); give it once',
    );
  });
});
