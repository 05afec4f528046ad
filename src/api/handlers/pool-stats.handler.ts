import { Handler } from '../http';

/**
 * GET /api/bots/pool-stats — the seed's shape. Until the Coolify pool exists it sums every platform:
 * total = limits, busy = occupying bots, idle = free capacity.
 */
export const poolStatsHandler: Handler = async (_req, ctx) => {
  const { platforms, globalQueue } = await ctx.placement.stats();
  const total = platforms.reduce((sum, p) => sum + p.limit, 0);
  const busy = platforms.reduce((sum, p) => sum + p.active, 0);
  return { status: 200, body: { total, idle: Math.max(0, total - busy), busy, error: 0, queueLength: globalQueue.length } };
};
