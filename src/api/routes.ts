import { RequestHandler, Router } from 'express';
import { adminGuard } from './admin';
import { clientRateLimit } from './rate-limit';
import type { ApiContext } from './api-context';
import { botAuth, botNamedInPath } from './bot-auth';
import { botConfigHandler } from './handlers/bot-config.handler';
import { botEventsHandler } from './handlers/bot-events.handler';
import { botLogsHandler } from './handlers/bot-logs.handler';
import { cancelBotHandler } from './handlers/cancel-bot.handler';
import { createBotHandler } from './handlers/create-bot.handler';
import { getBotHandler } from './handlers/get-bot.handler';
import { healthHandler, readyHandler } from './handlers/health.handler';
import { heartbeatHandler } from './handlers/heartbeat.handler';
import { leaveBotHandler } from './handlers/leave-bot.handler';
import { listBotsHandler } from './handlers/list-bots.handler';
import { listScreenshotsHandler } from './handlers/list-screenshots.handler';
import { platformsHandler, updatePlatformHandler } from './handlers/platforms.handler';
import { poolStatsHandler } from './handlers/pool-stats.handler';
import { recordingHandler } from './handlers/recording.handler';
import { reportEventHandler } from './handlers/report-event.handler';
import { sendChatHandler } from './handlers/send-chat.handler';
import { statusReportHandler } from './handlers/status-report.handler';
import { uploadScreenshotHandler } from './handlers/upload-screenshot.handler';
import { updateBotHandler } from './handlers/update-bot.handler';
import { clientAuth, Handler, jsonBody, route } from './http';

type Method = 'get' | 'post' | 'patch' | 'delete';
type Guard = 'none' | 'client' | 'bot' | 'admin';
/**
 * `json`: the route reads a JSON body (anything else is a 415); `multipart`: its handler reads a
 * multipart/form-data body itself, after its own checks; `none`: any body is ignored.
 */
type Body = 'json' | 'multipart' | 'none';

/**
 * Every route of the API in one table. Order matters where paths overlap (pool-stats before :id); the bot
 * routes come first because heartbeats are by far the most frequent request.
 */
export const ROUTES: ReadonlyArray<[Method, string, Guard, Body, Handler]> = [
  ['post', '/api/bots/:id/heartbeat', 'bot', 'none', heartbeatHandler],
  ['post', '/api/bots/:id/status', 'bot', 'json', statusReportHandler],
  ['get', '/api/bots/:id/config', 'bot', 'none', botConfigHandler],
  ['post', '/api/bots/:id/events', 'bot', 'json', reportEventHandler],
  ['post', '/api/bots/:id/screenshots', 'bot', 'multipart', uploadScreenshotHandler],
  ['get', '/healthz', 'none', 'none', healthHandler],
  ['get', '/readyz', 'none', 'none', readyHandler],
  ['get', '/api/platforms', 'client', 'none', platformsHandler],
  ['patch', '/api/platforms/:name', 'admin', 'json', updatePlatformHandler],
  ['get', '/api/bots/pool-stats', 'client', 'none', poolStatsHandler],
  ['post', '/api/bots', 'client', 'json', createBotHandler],
  ['get', '/api/bots', 'client', 'none', listBotsHandler],
  ['get', '/api/bots/:id', 'client', 'none', getBotHandler],
  ['patch', '/api/bots/:id', 'client', 'json', updateBotHandler],
  ['delete', '/api/bots/:id', 'client', 'none', cancelBotHandler],
  ['post', '/api/bots/:id/leave', 'client', 'none', leaveBotHandler],
  ['get', '/api/bots/:id/events', 'client', 'none', botEventsHandler],
  ['get', '/api/bots/:id/recording', 'client', 'none', recordingHandler],
  ['get', '/api/bots/:id/screenshots', 'client', 'none', listScreenshotsHandler],
  ['post', '/api/bots/:id/chat', 'client', 'json', sendChatHandler],
  ['get', '/api/bots/:id/logs', 'client', 'none', botLogsHandler],
];

export function createRouter(ctx: ApiContext): Router {
  const router = Router();
  const guards: Record<Guard, RequestHandler[]> = {
    none: [],
    client: [clientAuth(ctx), clientRateLimit(ctx.redis, ctx.config.redisPrefix, ctx.config.apiRateLimitPerMinute)],
    bot: [botAuth(ctx)],
    admin: [adminGuard(ctx)],
  };
  const bodies: Record<Body, RequestHandler[]> = { json: jsonBody(), multipart: [], none: [] };
  // credentials first: a body is read only for a caller who may use the route
  for (const [method, path, guard, body, handler] of ROUTES) {
    // a client may name a bot by its number; a bot's own token names it already
    const named = guard === 'client' && path.includes(':id') ? [botNamedInPath(ctx)] : [];
    router[method](path, ...guards[guard], ...named, ...bodies[body], route(handler, ctx));
  }
  return router;
}
