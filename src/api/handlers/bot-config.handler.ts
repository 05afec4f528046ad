import { Handler } from '../http';

/** GET /api/bots/:id/config (bot token) — 410 once the bot has ended. */
export const botConfigHandler: Handler = async (_req, ctx, caller) => ({
  status: 200,
  body: await ctx.bots.config(caller.botId!),
});
