import { Handler } from '../http';

/**
 * GET /api/bots/pool-stats — the seed's shape `{total, idle, busy, error, queueLength}`. With the Coolify pool
 * enabled the counts are its slot records (plus `starting` and a per-meeting-platform breakdown; total =
 * idle + starting + busy + error). Without a pool it sums every platform: total = limits, busy = occupying
 * bots, idle = free capacity, error 0.
 */
export const poolStatsHandler: Handler = async (_req, ctx) => {
  const { platforms, globalQueue } = await ctx.placement.stats();
  if (ctx.poolStats) return { status: 200, body: { ...(await ctx.poolStats()), queueLength: globalQueue.length } };
  const total = platforms.reduce((sum, p) => sum + p.limit, 0);
  const busy = platforms.reduce((sum, p) => sum + p.active, 0);
  return { status: 200, body: { total, idle: Math.max(0, total - busy), busy, error: 0, queueLength: globalQueue.length } };
};
