import { Handler } from '../http';

/** GET /api/platforms — per platform limit, active, queued; and the global queue. */
export const platformsHandler: Handler = async (_req, ctx) => ({ status: 200, body: await ctx.placement.stats() });
