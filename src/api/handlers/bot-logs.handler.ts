import { LogLevel } from '../../store/bot-logs';
import { Handler } from '../http';
import { listLogsSchema, validate } from '../schemas';

/** GET /api/bots/:id/logs?level=&limit=&cursor= — what the bot logged, oldest first, with how many were dropped. */
export const botLogsHandler: Handler = async (req, ctx, caller) => {
  const query = validate<{ level?: LogLevel; limit: number; cursor?: string }>(listLogsSchema, req.query, 'query');
  return { status: 200, body: await ctx.bots.logs(caller.owner!, String(req.params.id), query) };
};
