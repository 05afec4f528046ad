import { Handler } from '../http';

/**
 * GET /api/bots/pool-stats — the seed's shape `{total, idle, busy, error, queueLength}`. With the Coolify pool
 * enabled the counts are its slot records (plus `starting` and a per-meeting-platform breakdown; total =
 * idle + starting + busy + error). Without a pool it sums every platform: total = limits, busy = bots holding
 * capacity (active and queued), idle = free capacity, error 0.
 */
export const poolStatsHandler: Handler = async (_req, ctx) => {
  const { platforms, globalQueue } = await ctx.placement.stats();
  if (ctx.poolStats) return { status: 200, body: { ...(await ctx.poolStats()), queueLength: globalQueue.length } };
  const total = platforms.reduce((sum, p) => sum + p.limit, 0);
  // every bot holding capacity, also one assigned and waiting for a worker: idle is what is left to place on
  const busy = platforms.reduce((sum, p) => sum + p.active + p.queued, 0);
  return {
    status: 200,
    body: { total, idle: Math.max(0, total - busy), busy, error: 0, queueLength: globalQueue.length },
  };
};
