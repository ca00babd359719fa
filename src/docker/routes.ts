import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { StowageError, toStowageError } from '../core/errors.js';
import type { VolumeManager } from '../core/volume-manager.js';
import { BODY_LIMIT, CONTENT_TYPE, CreateReq, MountReq, NameReq } from './protocol.js';

/**
 * The Docker volume plugin protocol for one driver: parse with zod, call the VolumeManager,
 * answer JSON. StowageError messages go back in `Err` as they are (dockerd shows them verbatim),
 * so they are written for the user.
 */
export function createPluginApp(manager: VolumeManager, driver: string, log: Logger): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  // dockerd sends no Content-Type: parse every body as JSON whatever the headers say.
  app.use(express.json({ type: () => true, limit: BODY_LIMIT, strict: true }));

  const handle =
    <S extends z.ZodType | undefined>(
      op: string,
      schema: S,
      fn: (body: S extends z.ZodType ? z.infer<S> : undefined) => Promise<Record<string, unknown>>,
    ) =>
    async (req: Request, res: Response) => {
      const started = process.hrtime.bigint();
      let reply: Record<string, unknown>;
      try {
        let body: unknown;
        if (schema) {
          const parsed = schema.safeParse(req.body ?? {});
          if (!parsed.success) {
            const issue = parsed.error.issues[0];
            throw new StowageError(
              'INVALID_ARGUMENT',
              `bad ${op} request: ${issue?.path.join('.') || 'body'} ${issue?.message ?? 'is invalid'}`,
            );
          }
          body = parsed.data;
        }
        reply = { ...(await fn(body as never)), Err: '' };
      } catch (err) {
        const e = toStowageError(err);
        if (e.code === 'INTERNAL') log.error({ op, err: e.message, stack: e.stack }, 'request failed');
        else log.info({ op, code: e.code, err: e.message }, 'request refused');
        reply = { Err: e.message };
      }
      log.debug({ op, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'request');
      res.status(200).type(CONTENT_TYPE).send(JSON.stringify(reply));
    };

  app.post(
    '/Plugin.Activate',
    handle('Activate', undefined, async () => ({ Implements: ['VolumeDriver'] })),
  );
  app.post(
    '/VolumeDriver.Capabilities',
    handle('Capabilities', undefined, async () => ({
      Capabilities: { Scope: manager.capabilities(driver).scope },
    })),
  );
  app.post(
    '/VolumeDriver.Create',
    handle('Create', CreateReq, async (b) => {
      await manager.create(driver, b.Name, b.Opts);
      return {};
    }),
  );
  app.post(
    '/VolumeDriver.Remove',
    handle('Remove', NameReq, async (b) => {
      await manager.remove(driver, b.Name);
      return {};
    }),
  );
  app.post(
    '/VolumeDriver.Mount',
    handle('Mount', MountReq, async (b) => ({ Mountpoint: await manager.mount(driver, b.Name, b.ID) })),
  );
  app.post(
    '/VolumeDriver.Unmount',
    handle('Unmount', MountReq, async (b) => {
      await manager.unmount(driver, b.Name, b.ID);
      return {};
    }),
  );
  app.post(
    '/VolumeDriver.Path',
    handle('Path', NameReq, async (b) => ({ Mountpoint: await manager.path(driver, b.Name) })),
  );
  app.post(
    '/VolumeDriver.Get',
    handle('Get', NameReq, async (b) => {
      const view = await manager.get(driver, b.Name);
      return {
        Volume: {
          Name: view.volume.name,
          Mountpoint: view.mountpoint ?? '',
          CreatedAt: view.volume.createdAt,
          Status: view.status,
        },
      };
    }),
  );
  app.post(
    '/VolumeDriver.List',
    handle('List', undefined, async () => ({
      Volumes: (await manager.list(driver)).map((v) => ({
        Name: v.name,
        Mountpoint: v.mountpoint ?? '',
        CreatedAt: v.createdAt,
      })),
    })),
  );

  app.use((req: Request, res: Response) => {
    res
      .status(404)
      .type(CONTENT_TYPE)
      .send(JSON.stringify({ Err: `unknown endpoint ${req.method} ${req.path}` }));
  });
  // Body parser failures: malformed JSON, oversized bodies. Answered in the protocol's shape.
  app.use(
    (
      err: { type?: string; message?: string; status?: number },
      _req: Request,
      res: Response,
      _next: NextFunction,
    ) => {
      let status = err.status ?? 500;
      let msg = `request failed: ${err.message ?? 'unknown error'}`;
      if (err.type === 'entity.parse.failed') msg = `malformed JSON in request body: ${err.message}`;
      else if (err.type === 'entity.too.large') msg = `request body is larger than the ${BODY_LIMIT} limit`;
      else status = status >= 400 && status < 600 ? status : 500;
      log.info({ err: msg }, 'request rejected');
      res
        .status(status)
        .type(CONTENT_TYPE)
        .send(JSON.stringify({ Err: msg }));
    },
  );
  return app;
}
