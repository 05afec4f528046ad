import { createExpressMiddleware } from '@trpc/server/adapters/express';
import { RequestHandler } from 'express';
import { ValidationError } from '../../errors';
import type { ApiContext } from '../api-context';
import { createImageRouter, imageCaller, logServerErrors } from './trpc-router';

/**
 * Calls one request may carry. tRPC runs a batch's calls at once and bounds a batch only by its body, so
 * without this one request could start thousands of service calls; the images batch what they send in one
 * tick (a heartbeat, a log stream, an event, a status), a handful at most.
 */
export const MAX_CALLS_PER_REQUEST = 50;

/**
 * `/api/trpc`: the upstream bot protocol on tRPC's own Express adapter. A request's body is bounded at 5 MB
 * (a `logs.stream` of the images' at most 500 entries fits many times over) and its calls at
 * MAX_CALLS_PER_REQUEST.
 */
export function imageProtocol(ctx: ApiContext): RequestHandler {
  const handle = createExpressMiddleware({
    router: createImageRouter(ctx),
    createContext: ({ req }) => imageCaller(ctx.config.botTokenSecret, req.headers['x-milo-token']),
    maxBodySize: 5 * 1024 * 1024,
    onError: logServerErrors,
  });
  return (req, res, next) => {
    const calls = req.path.split(',').length;
    if (calls > MAX_CALLS_PER_REQUEST) {
      return next(new ValidationError(`a batch of ${calls} calls: at most ${MAX_CALLS_PER_REQUEST} a request`));
    }
    return handle(req, res, next);
  };
}
