import { isAbsolute, normalize } from 'node:path';
import { StowageError } from '../src/base/errors.js';

/**
 * The socket path of a CSI endpoint as the sidecars and kubelet name it: `unix:///csi/csi.sock`
 * (CSI_ENDPOINT), or a bare absolute path. Only unix sockets: a CSI plugin is reached on the node,
 * and a TCP port would let any local user drive mounts as root.
 */
export function socketPathOf(endpoint: string): string {
  const path = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
  if (!isAbsolute(path) || normalize(path) !== path || path.endsWith('/')) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `CSI endpoint ${JSON.stringify(endpoint)} is not a unix socket path: give unix:///an/absolute/path.sock`,
    );
  }
  if (Buffer.byteLength(path) > 107) {
    throw new StowageError(
      'INVALID_ARGUMENT',
      `CSI endpoint ${path} is longer than a unix socket path may be (107 bytes): choose a shorter path`,
    );
  }
  return path;
}
