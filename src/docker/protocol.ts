import { z } from 'zod';

// Request bodies of the Docker volume plugin protocol. Objects are loose: a newer dockerd may add
// fields, and that must not break us. Opts values are always strings on the wire.
export const NameReq = z.looseObject({ Name: z.string({ message: 'Name must be a string' }) });
export const CreateReq = z.looseObject({
  Name: z.string({ message: 'Name must be a string' }),
  Opts: z
    .record(z.string(), z.string({ message: 'option values must be strings' }))
    .nullish()
    .transform((o) => o ?? {}),
});
export const MountReq = z.looseObject({
  Name: z.string({ message: 'Name must be a string' }),
  ID: z.string({ message: 'ID must be a string' }),
});

export const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';
/** Request bodies above this are refused; the largest real one (Create with options) is far smaller. */
export const BODY_LIMIT_BYTES = 64 * 1024;
