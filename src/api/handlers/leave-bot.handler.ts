import { Handler } from '../http';

/** POST /api/bots/:id/leave — the bot goes LEAVING and is told on its next heartbeat. */
export const leaveBotHandler: Handler = async (req, ctx, caller) => ({
  status: 200,
  body: await ctx.bots.leave(caller.owner!, String(req.params.id)),
});
