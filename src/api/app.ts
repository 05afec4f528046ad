import { randomUUID } from 'node:crypto';
import { IncomingMessage, ServerResponse } from 'node:http';
import express, { Express, RequestHandler } from 'express';
import { pinoHttp } from 'pino-http';
import { logger, pinoOf } from '../logger';
import { NotFoundError } from '../errors';
import { createAdminRouter } from './admin';
import type { ApiContext } from './api-context';
import { errorHandler } from './http';
import { createRouter } from './routes';
import { imageProtocol } from './trpc/trpc-middleware';
import { createDocsPage } from './ui/docs-page';
import { createFleetPage } from './ui/fleet-page';
import { fleetGauges, metrics, scrape } from '../metrics';
import { checkReadiness } from '../readiness';

/**
 * A request id for every request (the caller's `X-Request-Id` if it is a plausible one, else a new UUID),
 * answered in `X-Request-Id` and in every error body. At debug level pino-http also logs a line per request
 * (answers of 5xx are logged by the error handler, with their stack at any level); below it, pino-http is
 * left out, since it builds a child logger around every request even when it logs nothing, a cost the
 * heartbeat path pays thousands of times a second.
 */
function requestIds(): RequestHandler {
  const assign = (req: IncomingMessage, res: ServerResponse) => {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && /^[\w.:-]{1,100}$/.test(given) ? given : randomUUID();
    res.setHeader('X-Request-Id', id);
    return id;
  };
  const pinoLogger = pinoOf(logger);
  if (!pinoLogger.isLevelEnabled('debug')) {
    return (req, res, next) => {
      req.id = assign(req, res);
      next();
    };
  }
  return pinoHttp({ logger: pinoLogger, genReqId: assign, customLogLevel: () => 'debug' });
}

/** Counts every request by method, route pattern (never the path itself: it holds ids) and status. */
const countRequests: RequestHandler = (req, res, next) => {
  res.once('finish', () => {
    // Express types the matched route as any; its path is the pattern the route table gave.
    const pattern = (req.route as { path: string } | undefined)?.path;
    const route = pattern ? pattern : 'unmatched';
    metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
  });
  next();
};

/**
 * The Express app: request counting, /metrics (Prometheus text; counts only, nothing secret, so it needs no
 * key), the OpenAPI document and its reference page (/api/openapi.json, /docs), the upstream bot protocol
 * (/api/trpc, tRPC), the route table (which reads JSON bodies where a route takes one), Bull Board, the fleet page, the one error handler.
 */
export function createApp(ctx: ApiContext): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestIds());
  app.use(countRequests);
  const fleet = fleetGauges(ctx.placement, () => checkReadiness(ctx));
  app.get('/metrics', (_req, res, next) => {
    scrape(fleet)
      .then(({ contentType, body }) => res.type(contentType).send(body))
      .catch(next);
  });
  app.use(createDocsPage(ctx.config));
  app.use('/api/trpc', imageProtocol(ctx));
  app.use(createRouter(ctx));
  app.use(createAdminRouter(ctx));
  app.use(createFleetPage(ctx));
  app.use((req, _res, next) => next(new NotFoundError(`no route for ${req.method} ${req.path}`)));
  app.use(errorHandler);
  return app;
}
