import { RequestHandler } from 'express';
import { botOfToken } from '../auth/bot-token';
import { UnauthorizedError } from '../errors';
import type { ApiContext } from './api-context';
import { Caller, presentedToken } from './http';

/**
 * Bot routes accept only that bot's own token (Bearer or X-Milo-Token), the bot named in the path by its id or
 * its number; API keys and other bots' tokens get 401.
 */
export function botAuth(ctx: ApiContext): RequestHandler {
  return (req, res, next) => {
    const token = presentedToken(req, 'x-milo-token');
    const botId = token ? botOfToken(ctx.config.botTokenSecret, String(req.params.id), token) : null;
    if (!botId) return next(new UnauthorizedError('a valid bot token for this bot is required'));
    res.locals.caller = { botId } satisfies Caller;
    next();
  };
}

/** For client routes: a bot named by its number in the path (`/api/bots/42`) is named by its id from here on. */
export function botNamedInPath(ctx: ApiContext): RequestHandler {
  return (req, _res, next) => {
    ctx.bots
      .resolveId(String(req.params.id))
      .then((id) => {
        req.params.id = id;
        next();
      })
      .catch(next);
  };
}
