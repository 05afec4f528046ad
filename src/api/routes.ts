import { RequestHandler, Router } from 'express';
import type { ApiContext } from './api-context';
import { botAuth } from './bot-auth';
import { botConfigHandler } from './handlers/bot-config.handler';
import { botEventsHandler } from './handlers/bot-events.handler';
import { cancelBotHandler } from './handlers/cancel-bot.handler';
import { createBotHandler } from './handlers/create-bot.handler';
import { getBotHandler } from './handlers/get-bot.handler';
import { healthHandler, readyHandler } from './handlers/health.handler';
import { heartbeatHandler } from './handlers/heartbeat.handler';
import { leaveBotHandler } from './handlers/leave-bot.handler';
import { listBotsHandler } from './handlers/list-bots.handler';
import { platformsHandler } from './handlers/platforms.handler';
import { poolStatsHandler } from './handlers/pool-stats.handler';
import { reportEventHandler } from './handlers/report-event.handler';
import { statusReportHandler } from './handlers/status-report.handler';
import { clientAuth, Handler, route } from './http';

type Method = 'get' | 'post' | 'delete';
type Guard = 'none' | 'client' | 'bot';

/**
 * Every route of the API in one table. Order matters where paths overlap (pool-stats before :id); the bot
 * routes come first because heartbeats are by far the most frequent request.
 */
export const ROUTES: ReadonlyArray<[Method, string, Guard, Handler]> = [
  ['post', '/api/bots/:id/heartbeat', 'bot', heartbeatHandler],
  ['post', '/api/bots/:id/status', 'bot', statusReportHandler],
  ['get', '/api/bots/:id/config', 'bot', botConfigHandler],
  ['post', '/api/bots/:id/events', 'bot', reportEventHandler],
  ['get', '/healthz', 'none', healthHandler],
  ['get', '/readyz', 'none', readyHandler],
  ['get', '/api/platforms', 'client', platformsHandler],
  ['get', '/api/bots/pool-stats', 'client', poolStatsHandler],
  ['post', '/api/bots', 'client', createBotHandler],
  ['get', '/api/bots', 'client', listBotsHandler],
  ['get', '/api/bots/:id', 'client', getBotHandler],
  ['delete', '/api/bots/:id', 'client', cancelBotHandler],
  ['post', '/api/bots/:id/leave', 'client', leaveBotHandler],
  ['get', '/api/bots/:id/events', 'client', botEventsHandler],
];

export function createRouter(ctx: ApiContext): Router {
  const router = Router();
  const guards: Record<Guard, RequestHandler[]> = { none: [], client: [clientAuth(ctx)], bot: [botAuth(ctx)] };
  for (const [method, path, guard, handler] of ROUTES) router[method](path, ...guards[guard], route(handler, ctx));
  return router;
}
