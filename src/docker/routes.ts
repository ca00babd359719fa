import type { z } from 'zod';
import { StowageError, toStowageError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { VolumeManager } from '../core/volume-manager.js';
import { type Caller, createRouter, type RouteHandler } from './http.js';
import { ListReplies } from './list-reply.js';
import { BODY_LIMIT_BYTES, CreateReq, MountReq, NameReq } from './protocol.js';

/**
 * Times requests of one operation (metrics): called once per route when the socket is set up,
 * it returns what each request calls with its result code (`OK` or the error's) and duration.
 */
export type RequestTimer = (operation: string) => (code: string, seconds: number) => void;

/**
 * The Docker volume plugin protocol for one driver: parse with zod, call the VolumeManager,
 * answer JSON. StowageError messages go back in `Err` as they are (dockerd shows them verbatim),
 * so they are written for the user. Protocol errors are answered with HTTP 200 and `Err`, which
 * dockerd shows without prefixing the method name.
 */
export function createPluginHandler(
  manager: VolumeManager,
  driver: string,
  log: Logger,
  timer?: RequestTimer,
) {
  const routes = new Map<string, RouteHandler>();
  const route = <S extends z.ZodType | undefined>(
    op: string,
    schema: S,
    fn: (
      body: S extends z.ZodType ? z.infer<S> : undefined,
      caller: Caller,
    ) => Promise<Record<string, unknown> | string | Buffer>,
  ) => {
    const done = timer?.(op);
    routes.set(`/${op.includes('.') ? op : `VolumeDriver.${op}`}`, async (raw, caller) => {
      const started = done ? performance.now() : 0;
      try {
        let body: unknown;
        if (schema) {
          const parsed = schema.safeParse(raw ?? {});
          if (!parsed.success) {
            const issue = parsed.error.issues[0];
            throw new StowageError(
              'INVALID_ARGUMENT',
              `bad ${op} request: ${issue?.path.join('.') || 'body'} ${issue?.message ?? 'is invalid'}`,
            );
          }
          body = parsed.data;
        }
        const reply = await fn(body as never, caller);
        done?.('OK', (performance.now() - started) / 1000);
        return typeof reply === 'string' || Buffer.isBuffer(reply)
          ? reply
          : JSON.stringify({ ...reply, Err: '' });
      } catch (err) {
        const e = toStowageError(err);
        done?.(e.code, (performance.now() - started) / 1000);
        if (e.code === 'INTERNAL') log.error({ op, err: e.message, stack: e.stack }, 'request failed');
        else log.info({ op, code: e.code, err: e.message }, 'request refused');
        return JSON.stringify({ Err: e.message });
      }
    });
  };

  route('Plugin.Activate', undefined, async () => ({ Implements: ['VolumeDriver'] }));
  route('Capabilities', undefined, async () => ({
    Capabilities: { Scope: manager.capabilities(driver).scope },
  }));
  route('Create', CreateReq, async (b) => {
    await manager.create(driver, b.Name, b.Opts);
    return {};
  });
  route('Remove', NameReq, async (b) => {
    await manager.remove(driver, b.Name);
    return {};
  });
  route('Mount', MountReq, async (b, caller) => {
    const mountpoint = await manager.mount(driver, b.Name, b.ID);
    // Docker counts a mount only when it reads this reply; one it never read is never unmounted,
    // and its reference would keep the volume from being removed forever. Take it back.
    caller.onUndelivered(async () => {
      log.warn({ volume: b.Name, id: b.ID }, 'Mount reply not delivered (caller gone); undoing the mount');
      await manager.unmount(driver, b.Name, b.ID).catch((err: unknown) => {
        log.error(
          { volume: b.Name, id: b.ID, err: (err as Error).message },
          'undoing an unheard Mount failed',
        );
      });
    });
    return { Mountpoint: mountpoint };
  });
  route('Unmount', MountReq, async (b) => {
    await manager.unmount(driver, b.Name, b.ID);
    return {};
  });
  route('Path', NameReq, async (b) => ({ Mountpoint: await manager.path(driver, b.Name) }));
  route('Get', NameReq, async (b) => {
    const view = await manager.get(driver, b.Name);
    return {
      Volume: {
        Name: view.volume.name,
        Mountpoint: view.mountpoint ?? '',
        CreatedAt: view.volume.createdAt,
        Status: view.status,
      },
    };
  });
  // Encoded once per change of the store's summaries, into reused memory (see list-reply.ts).
  const listReplies = new ListReplies();
  route('List', undefined, async (_b, caller) => {
    const reply = listReplies.take(await manager.list(driver));
    caller.onDelivered(reply.delivered);
    return reply.bytes;
  });

  return createRouter(routes, {
    bodyLimit: BODY_LIMIT_BYTES,
    onRejected: (message) => log.info({ err: message }, 'request rejected'),
  });
}
