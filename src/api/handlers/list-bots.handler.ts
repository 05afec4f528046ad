import { BotStatus } from '../../domain/bot.lifecycle';
import { Handler } from '../http';
import { listBotsSchema, validate } from '../schemas';

/** GET /api/bots?status=&platform=&limit=&cursor= — newest first, `nextCursor` null on the last page. */
export const listBotsHandler: Handler = async (req, ctx, caller) => {
  const query = validate<{ status?: BotStatus; platform?: string; limit: number; cursor?: string }>(
    listBotsSchema,
    req.query,
    'query',
  );
  return { status: 200, body: await ctx.bots.list(caller.owner!, query) };
};
