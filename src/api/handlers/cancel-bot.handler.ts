import { Handler } from '../http';

/** DELETE /api/bots/:id — ends the bot now (CANCELLED). Idempotent. */
export const cancelBotHandler: Handler = async (req, ctx, caller) => ({
  status: 200,
  body: await ctx.bots.cancel(caller.owner!, String(req.params.id)),
});
