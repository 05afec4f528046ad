import { Handler } from '../http';

/** POST /api/bots/:id/heartbeat (bot token) → {shouldLeave, logLevel}; 410 once ended. One Redis round trip, no database. */
export const heartbeatHandler: Handler = async (_req, ctx, caller) => ({
  status: 200,
  body: await ctx.bots.heartbeat(caller.botId!),
});
