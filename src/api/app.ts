import express, { Express, RequestHandler } from 'express';
import { NotFoundError } from '../errors';
import { createAdminRouter } from './admin';
import type { ApiContext } from './api-context';
import { errorHandler } from './http';
import { createRouter } from './routes';
import { fleetGauges, metrics, scrape } from '../metrics';

/** Counts every request by method, route pattern (never the path itself: it holds ids) and status. */
const countRequests: RequestHandler = (req, res, next) => {
  res.once('finish', () => {
    const route = req.route?.path ? String(req.route.path) : 'unmatched';
    metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
  });
  next();
};

/**
 * The Express app: request counting, /metrics (Prometheus text; counts only, nothing secret, so it needs no
 * key), the route table (which reads JSON bodies where a route takes one), Bull Board, the one error handler.
 */
export function createApp(ctx: ApiContext): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(countRequests);
  const fleet = fleetGauges(ctx.placement);
  app.get('/metrics', (_req, res, next) => {
    scrape(fleet)
      .then(({ contentType, body }) => res.type(contentType).send(body))
      .catch(next);
  });
  app.use(createRouter(ctx));
  app.use(createAdminRouter(ctx));
  app.use((req, _res, next) => next(new NotFoundError(`no route for ${req.method} ${req.path}`)));
  app.use(errorHandler);
  return app;
}
