import { StowageError } from '../src/base/errors.js';
import type { AwsCredentials } from '../src/cloud/client-options.js';
import { validateVolumeName } from '../src/core/names.js';
import type { FlexDriverTraits } from './capabilities.js';

const K8S = 'kubernetes.io/';
const SECRET = `${K8S}secret/`;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The options JSON kubelet passes, split into what stowage needs. */
export interface FlexOptions {
  /** The stowage volume: option `name`, else the PV (or inline volume) name. */
  name: string;
  /** Options for the driver, with the same names and aliases as Docker's `-o`. */
  driverOptions: Record<string, string>;
  readOnly: boolean;
  podUid?: string;
  /**
   * AWS credentials from the PV's Secret (keys awsAccessKeyId, awsSecretAccessKey, awsSessionToken):
   * for nodes without an instance profile. Handed to this call's AWS clients; never options.
   */
  awsCredentials?: AwsCredentials;
}

const AWS_SECRET_KEYS: Record<string, keyof AwsCredentials> = {
  awsAccessKeyId: 'accessKeyId',
  awsSecretAccessKey: 'secretAccessKey',
  awsSessionToken: 'sessionToken',
};

/**
 * Parses kubelet's options argument. User keys (the PV's `options:`) win over kubelet's; secrets
 * (`kubernetes.io/secret/<key>`, base64) become options like any other and are never logged.
 * Other `kubernetes.io/*` keys (pod name, service account, fsGroup) are kubelet's business:
 * kubelet applies fsGroup itself, and newer kubelets may add keys, so they are not errors.
 */
export function parseFlexOptions(json: string | undefined, traits: FlexDriverTraits): FlexOptions {
  const raw = parseJsonObject(json);
  const driverOptions: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  let name: string | undefined;
  for (const [key, value] of Object.entries(raw)) {
    if (key.startsWith(SECRET)) {
      secrets[key.slice(SECRET.length)] = decodeSecret(key.slice(SECRET.length), value);
    } else if (key === 'name' || key === 'volumeName') {
      name = value;
    } else if (!key.startsWith(K8S)) {
      driverOptions[key] = value;
    }
  }
  const aws: Partial<AwsCredentials> = {};
  for (const [key, value] of Object.entries(secrets)) {
    const field = AWS_SECRET_KEYS[key];
    if (field) {
      aws[field] = value;
      continue;
    }
    if (key in driverOptions) {
      throw new StowageError(
        'INVALID_ARGUMENT',
        `option ${key} is given both in the volume's options and in its secret; keep one`,
      );
    }
    driverOptions[key] = value;
  }
  const fsType = raw[`${K8S}fsType`];
  if (traits.blockFs && fsType && !hasKey(driverOptions, 'fsType')) driverOptions.fsType = fsType;
  const readwrite = raw[`${K8S}readwrite`];
  if (readwrite !== undefined && readwrite !== 'ro' && readwrite !== 'rw') {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `kubernetes.io/readwrite must be "ro" or "rw", not ${JSON.stringify(readwrite)}`,
    );
  }
  const podUid = raw[`${K8S}pod.uid`] ?? raw[`${K8S}pod.UID`];
  const volumeName = name ?? raw[`${K8S}pvOrVolumeName`];
  if (volumeName === undefined) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      'the options name no volume: set options.name in the PV (or kubelet must send kubernetes.io/pvOrVolumeName)',
    );
  }
  return {
    name: validateVolumeName(volumeName),
    driverOptions,
    readOnly: readwrite === 'ro',
    ...(podUid ? { podUid } : {}),
    ...credentialsOf(aws),
  };
}

/** The Secret's AWS keys as credentials: none, or a key id with its secret (and maybe a token). */
function credentialsOf(aws: Partial<AwsCredentials>): { awsCredentials?: AwsCredentials } {
  if (Object.keys(aws).length === 0) return {};
  const { accessKeyId, secretAccessKey } = aws;
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      'the secret must hold both awsAccessKeyId and awsSecretAccessKey (and optionally awsSessionToken), or none of them',
    );
  }
  return { awsCredentials: { ...aws, accessKeyId, secretAccessKey } };
}

function parseJsonObject(json: string | undefined): Record<string, string> {
  if (json === undefined) throw new StowageError('INVALID_ARGUMENT', 'the options JSON argument is missing');
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `the options argument is not valid JSON: ${(err as Error).message}`,
    );
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new StowageError('INVALID_ARGUMENT', 'the options argument must be a JSON object of strings');
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') {
      throw new StowageError('INVALID_ARGUMENT', `option ${k} must be a string, not ${JSON.stringify(v)}`);
    }
  }
  return value as Record<string, string>;
}

function decodeSecret(key: string, value: string): string {
  if (!BASE64.test(value) || value.length % 4 !== 0) {
    // The value itself is a secret: never echo it.
    throw new StowageError('INVALID_ARGUMENT', `secret key ${key} is not base64 as kubelet sends it`);
  }
  return Buffer.from(value, 'base64').toString('utf8');
}

function hasKey(options: Record<string, string>, key: string): boolean {
  const k = key.toLowerCase();
  return Object.keys(options).some((o) => o.toLowerCase() === k);
}

/** Old kubelets passed arguments in other orders: the options are the argument that is JSON. */
export function isJson(arg: string): boolean {
  return /^\s*[{[]/.test(arg);
}
