import { Handler } from '../http';
import { botEventSchema, validate } from '../schemas';

/** POST /api/bots/:id/events (bot token) — participant joins, logs and the like; 410 once ended. */
export const reportEventHandler: Handler = async (req, ctx, caller) => {
  const event = validate<{ type: string; at?: Date; data?: unknown }>(botEventSchema, req.body);
  return { status: 201, body: await ctx.bots.reportEvent(caller.botId!, event) };
};
