import { LogLevel } from '../../store/bot-logs';
import { Handler } from '../http';
import { updateBotSchema, validate } from '../schemas';

/** PATCH /api/bots/:id {logLevel} — the level the bot is asked to log at (answered with its heartbeats). */
export const updateBotHandler: Handler = async (req, ctx, caller) => {
  const { logLevel } = validate<{ logLevel: LogLevel | null }>(updateBotSchema, req.body);
  return { status: 200, body: await ctx.bots.setLogLevel(caller.owner!, String(req.params.id), logLevel) };
};
