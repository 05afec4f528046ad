import { Handler } from '../http';

/** GET /api/bots/:id/events — status changes and reported events, oldest first. */
export const botEventsHandler: Handler = async (req, ctx, caller) => ({
  status: 200,
  body: await ctx.bots.events(caller.owner!, String(req.params.id)),
});
