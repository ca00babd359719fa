import { chmod, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { StowageError } from '../src/base/errors.js';
import type { Logger } from '../src/base/logger.js';
import { clearStaleSocket } from '../src/net/unix-socket.js';
import { socketPathOf } from './endpoint.js';

/** Which CSI services one process serves: the node plugin, the controller plugin, or both. */
export type CsiMode = 'node' | 'controller' | 'all';
export const CSI_MODES: readonly CsiMode[] = ['node', 'controller', 'all'];

/** A service's definition (from the .proto) and this plugin's implementation of it. */
export interface ServedService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

export interface CsiServer {
  path: string;
  /** Stops accepting calls, lets those in flight finish for up to `graceMs`, removes the socket. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves CSI on a unix socket, mode 0600: whoever can talk to it can mount, unmount and delete
 * volumes as root, so only root (kubelet and the sidecars run as root) may. A socket left by a
 * crashed server is replaced; one a live server answers on is refused.
 */
export async function serveCsi(
  endpoint: string,
  services: readonly ServedService[],
  log: Logger,
): Promise<CsiServer> {
  const path = socketPathOf(endpoint);
  await mkdir(dirname(path), { recursive: true, mode: 0o750 });
  await clearStaleSocket(path);
  const server = new Server({
    // A CSI request is small (the largest carries a volume's context and its secrets).
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
  });
  for (const s of services) server.addService(s.definition, s.implementation);
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix:${path}`, ServerCredentials.createInsecure(), (err) => {
      if (err) {
        reject(
          new StowageError('UNAVAILABLE', `cannot serve CSI on ${path}: ${err.message}`, { cause: err }),
        );
        return;
      }
      resolve();
    });
  });
  try {
    await chmod(path, 0o600);
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
  log.info({ socket: path }, 'serving CSI');
  return {
    path,
    close: async (graceMs = 20_000) => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ socket: path }, 'CSI calls still running at shutdown deadline; dropping them');
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await unlink(path).catch(() => undefined);
      log.info({ socket: path }, 'CSI socket closed');
    },
  };
}
