import { createExpressMiddleware } from '@trpc/server/adapters/express';
import { RequestHandler } from 'express';
import type { ApiContext } from '../api-context';
import { createImageRouter, imageCaller, logServerErrors } from './trpc-router';

/**
 * `/api/trpc`: the upstream bot protocol on tRPC's own Express adapter. A batch is bounded only by its body:
 * 5 MB (a `logs.stream` of the images' at most 500 entries fits many times over).
 */
export function imageProtocol(ctx: ApiContext): RequestHandler {
  return createExpressMiddleware({
    router: createImageRouter(ctx),
    createContext: ({ req }) => imageCaller(ctx.config.botTokenSecret, req.headers['x-milo-token']),
    maxBodySize: 5 * 1024 * 1024,
    onError: logServerErrors,
  });
}
