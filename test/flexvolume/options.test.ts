import { describe, expect, it } from 'vitest';
import { FLEX_DRIVERS } from '../../flexvolume/capabilities.js';
import { flexMain } from '../../flexvolume/main.js';
import { isJson, parseFlexOptions } from '../../flexvolume/options.js';
import { deviceMountPath, podVolumeDir } from '../../flexvolume/paths.js';
import { failure } from '../helpers/failure.js';

const ebs = FLEX_DRIVERS.ebs!;
const nfs = FLEX_DRIVERS.nfs!;
const K = '/var/lib/kubelet';
const b64 = (s: string) => Buffer.from(s).toString('base64');
/** The StowageError a synchronous call throws. */
const failing = (fn: () => unknown) => failure(Promise.resolve().then(fn));

describe('kubelet options', () => {
  it('takes the PV name, the user options (which win), fsType for block drivers and ro', () => {
    const o = parseFlexOptions(
      JSON.stringify({
        'kubernetes.io/fsType': 'xfs',
        'kubernetes.io/readwrite': 'ro',
        'kubernetes.io/pvOrVolumeName': 'pv-1',
        'kubernetes.io/pod.uid': 'u-1',
        'kubernetes.io/serviceAccount.name': 'default',
        'kubernetes.io/mounterArgs.FsGroup': '2000',
        size: '10',
      }),
      ebs,
    );
    expect(o).toEqual({
      name: 'pv-1',
      driverOptions: { size: '10', fsType: 'xfs' },
      readOnly: true,
      podUid: 'u-1',
    });
    const user = parseFlexOptions('{"kubernetes.io/fsType":"xfs","fstype":"ext4","name":"db"}', ebs);
    expect(user).toEqual({ name: 'db', driverOptions: { fstype: 'ext4' }, readOnly: false });
  });

  it('ignores fsType for network filesystems and accepts the old pod.UID spelling', () => {
    const o = parseFlexOptions(
      '{"kubernetes.io/fsType":"nfs","kubernetes.io/pvOrVolumeName":"pv-2","kubernetes.io/pod.UID":"u-2","server":"10.0.0.1"}',
      nfs,
    );
    expect(o).toEqual({
      name: 'pv-2',
      driverOptions: { server: '10.0.0.1' },
      readOnly: false,
      podUid: 'u-2',
    });
  });

  it('decodes secrets into options and never echoes a secret in an error', async () => {
    const o = parseFlexOptions(
      JSON.stringify({
        'kubernetes.io/pvOrVolumeName': 'pv',
        'kubernetes.io/secret/kmsKeyId': b64('alias/k'),
      }),
      ebs,
    );
    expect(o.driverOptions).toEqual({ kmsKeyId: 'alias/k' });
    const aws = parseFlexOptions(
      JSON.stringify({
        name: 'v1',
        'kubernetes.io/secret/awsAccessKeyId': b64('AKIAX'),
        'kubernetes.io/secret/awsSecretAccessKey': b64('s3cr3t'),
      }),
      FLEX_DRIVERS.efs!,
    );
    expect(aws).toEqual({
      name: 'v1',
      driverOptions: {},
      readOnly: false,
      awsCredentials: { accessKeyId: 'AKIAX', secretAccessKey: 's3cr3t' },
    });
    // A key id without its secret (or the reverse) is refused rather than half-used.
    const half = await failing(() =>
      parseFlexOptions(
        JSON.stringify({ name: 'v1', 'kubernetes.io/secret/awsAccessKeyId': b64('AKIAX') }),
        FLEX_DRIVERS.efs!,
      ),
    );
    expect(half.message).toBe(
      'the secret must hold both awsAccessKeyId and awsSecretAccessKey (and optionally awsSessionToken), or none of them',
    );
    const bad = await failing(() =>
      parseFlexOptions('{"kubernetes.io/pvOrVolumeName":"pv","kubernetes.io/secret/pw":"s3cr3t!"}', ebs),
    );
    expect(bad.message).toBe('secret key pw is not base64 as kubelet sends it');
    const twice = await failing(() =>
      parseFlexOptions(
        JSON.stringify({ name: 'v1', kmsKeyId: 'a', 'kubernetes.io/secret/kmsKeyId': b64('b') }),
        ebs,
      ),
    );
    expect(twice.message).toBe(
      "option kmsKeyId is given both in the volume's options and in its secret; keep one",
    );
  });

  it('refuses what kubelet never sends: non-strings, other readwrite values, bad names', async () => {
    const msg = async (json: string | undefined) =>
      (await failing(() => parseFlexOptions(json, nfs))).message;
    expect(await msg(undefined)).toBe('the options JSON argument is missing');
    expect(await msg('{"size":10,"name":"v1"}')).toBe('option size must be a string, not 10');
    expect(await msg('{"name":"v1","kubernetes.io/readwrite":"rwx"}')).toBe(
      'kubernetes.io/readwrite must be "ro" or "rw", not "rwx"',
    );
    expect(await msg('{"name":"../x"}')).toMatch(/^invalid volume name/);
    expect(await msg('null')).toBe('the options argument must be a JSON object of strings');
  });

  it('finds the JSON argument by its leading brace, as old kubelets ordered arguments differently', () => {
    expect(['/dev/xvdf', '{"a":"b"}'].findIndex(isJson)).toBe(1);
    expect(['/var/lib/kubelet/x', ' [1]'].findIndex(isJson)).toBe(1);
  });
});

describe("kubelet's paths", () => {
  it('accepts pod volume directories and device mount paths of this driver only', async () => {
    expect(podVolumeDir(`${K}/pods/u-1/volumes/stowage~nfs/data`, K, 'nfs')).toEqual({
      path: `${K}/pods/u-1/volumes/stowage~nfs/data`,
      podUid: 'u-1',
      volDir: 'data',
    });
    expect(deviceMountPath(`${K}/plugins/kubernetes.io/flexvolume/stowage/ebs/mounts/db/`, K, 'ebs')).toEqual(
      {
        path: `${K}/plugins/kubernetes.io/flexvolume/stowage/ebs/mounts/db`,
        volumeName: 'db',
      },
    );
    const refused = async (fn: () => unknown) => (await failing(fn)).code;
    expect(await refused(() => podVolumeDir(`${K}/pods/u-1/volumes/stowage~ebs/data`, K, 'nfs'))).toBe(
      'PERMISSION_DENIED',
    );
    expect(
      await refused(() =>
        podVolumeDir(`${K}/pods/u-1/volumes/stowage~nfs/data/../../../../../etc`, K, 'nfs'),
      ),
    ).toBe('PERMISSION_DENIED');
    expect(await refused(() => podVolumeDir('/etc', K, 'nfs'))).toBe('PERMISSION_DENIED');
    expect(await refused(() => podVolumeDir(undefined, K, 'nfs'))).toBe('INVALID_ARGUMENT');
    expect(
      await refused(() =>
        deviceMountPath(`${K}/plugins/kubernetes.io/flexvolume/other/ebs/mounts/db`, K, 'ebs'),
      ),
    ).toBe('PERMISSION_DENIED');
  });
});

describe('calls answered without the store', () => {
  it('answers init, getvolumename, Not supported, and Failure for an unknown driver or no call', async () => {
    expect(await flexMain('nfs', ['init'])).toEqual({
      status: 'Success',
      capabilities: {
        attach: false,
        fsGroup: false,
        requiresFSResize: false,
        selinuxRelabel: true,
        supportsMetrics: false,
      },
    });
    expect(await flexMain('ebs', ['getvolumename', '{"kubernetes.io/pvOrVolumeName":"pv-9"}'])).toEqual({
      status: 'Success',
      volumeName: 'pv-9',
    });
    expect(await flexMain('nfs', ['attach', '{}', 'n1'])).toEqual({
      status: 'Not supported',
      message: 'stowage/nfs does not implement attach',
    });
    expect(await flexMain('ebs', ['getvolumename'])).toEqual({
      status: 'Failure',
      message: 'the options JSON argument is missing',
    });
    expect((await flexMain('zfs', ['init'])).status).toBe('Failure');
    expect((await flexMain('nfs', [])).message).toMatch(/^no call given/);
  });
});
