import { RequestHandler } from 'express';
import { verifyBotToken } from '../auth/bot-token';
import { UnauthorizedError } from '../errors';
import type { ApiContext } from './api-context';
import { Caller, presentedToken } from './http';

/** Bot routes accept only that bot's own token (Bearer or X-Milo-Token); API keys and other bots' tokens get 401. */
export function botAuth(ctx: ApiContext): RequestHandler {
  return (req, res, next) => {
    const token = presentedToken(req, 'x-milo-token');
    const botId = String(req.params.id);
    if (!token || !verifyBotToken(ctx.config.botTokenSecret, botId, token)) {
      return next(new UnauthorizedError('a valid bot token for this bot is required'));
    }
    res.locals.caller = { botId } satisfies Caller;
    next();
  };
}
