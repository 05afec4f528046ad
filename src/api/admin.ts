import { timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Express, RequestHandler, Router } from 'express';
import { NotFoundError, UnauthorizedError } from '../errors';
import type { ApiContext } from './api-context';
import { presentedToken } from './http';

export const ADMIN_BASE_PATH = '/admin/queues';

/**
 * Bull Board at /admin/queues, showing every queue, behind ADMIN_API_KEY (Bearer, x-api-key, or HTTP basic
 * auth with the key as password so a browser can log in). Without ADMIN_API_KEY the board is not served.
 */
export function createAdminRouter(ctx: ApiContext): Router {
  const router = Router();
  const adminKey = ctx.config.adminApiKey;
  if (!adminKey) {
    router.use('/admin', (_req, _res, next) => next(new NotFoundError('the admin UI is off: set ADMIN_API_KEY')));
    return router;
  }
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(ADMIN_BASE_PATH);
  createBullBoard({ queues: ctx.queues.map((queue) => new BullMQAdapter(queue)), serverAdapter });
  // The adapter types its router as any: it is the Express app it builds.
  router.use(ADMIN_BASE_PATH, adminAuth(adminKey), serverAdapter.getRouter() as Express);
  return router;
}

/** Guards the admin routes of the route table: the admin key, or 404 when admin routes are off. */
export function adminGuard(ctx: ApiContext): RequestHandler {
  const adminKey = ctx.config.adminApiKey;
  if (!adminKey) return (_req, _res, next) => next(new NotFoundError('admin routes are off: set ADMIN_API_KEY'));
  return adminAuth(adminKey);
}

function adminAuth(adminKey: string): RequestHandler {
  const expected = Buffer.from(adminKey);
  const matches = (given?: string) => {
    const buffer = Buffer.from(given ?? '');
    return buffer.length === expected.length && timingSafeEqual(buffer, expected);
  };
  return (req, res, next) => {
    const basic = req.headers.authorization?.startsWith('Basic ')
      ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString().split(':').slice(1).join(':')
      : undefined;
    if (matches(basic) || matches(presentedToken(req, 'x-api-key'))) return next();
    res.setHeader('WWW-Authenticate', 'Basic realm="meeboter admin"');
    next(new UnauthorizedError('the admin key is required'));
  };
}
