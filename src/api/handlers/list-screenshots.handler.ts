import { Handler } from '../http';
import { listScreenshotsSchema, validate } from '../schemas';

/** GET /api/bots/:id/screenshots — the bot's screenshots, oldest first, with short-lived links: `{data, nextCursor}`. */
export const listScreenshotsHandler: Handler = async (req, ctx, caller) => {
  const page = validate<{ limit: number; cursor?: string }>(listScreenshotsSchema, req.query, 'query');
  return { status: 200, body: await ctx.bots.screenshots(caller.owner!, String(req.params.id), page) };
};
