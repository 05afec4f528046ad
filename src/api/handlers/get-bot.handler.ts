import { Handler } from '../http';

/** GET /api/bots/:id */
export const getBotHandler: Handler = async (req, ctx, caller) => ({
  status: 200,
  body: await ctx.bots.get(caller.owner!, String(req.params.id)),
});
