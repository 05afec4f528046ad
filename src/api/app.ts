import express, { Express } from 'express';
import { NotFoundError } from '../errors';
import { createAdminRouter } from './admin';
import type { ApiContext } from './api-context';
import { errorHandler } from './http';
import { createRouter } from './routes';

/** The Express app: the route table (which reads JSON bodies where a route takes one), Bull Board, the one error handler. */
export function createApp(ctx: ApiContext): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(createRouter(ctx));
  app.use(createAdminRouter(ctx));
  app.use((req, _res, next) => next(new NotFoundError(`no route for ${req.method} ${req.path}`)));
  app.use(errorHandler);
  return app;
}
