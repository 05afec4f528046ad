import { NotFoundError } from '../../errors';
import { Handler } from '../http';
import { platformControlSchema, validate } from '../schemas';

/** GET /api/platforms — per platform limit, active, queued; and the global queue. */
export const platformsHandler: Handler = async (_req, ctx) => ({ status: 200, body: await ctx.placement.stats() });

/**
 * PATCH /api/platforms/:name (admin key) — `{limit}` lowers the platform's limit (at most the configured one;
 * null restores it), `{draining}` stops or resumes new placements on it; every process obeys at once. No bot
 * is stopped: while above a lowered limit, new placements wait until the platform is under it.
 */
export const updatePlatformHandler: Handler = async (req, ctx) => {
  const name = String(req.params.name);
  const settings = ctx.config.platforms.find((platform) => platform.name === name);
  if (!settings) throw new NotFoundError(`platform ${name} is not enabled in this fleet`);
  const change = validate<{ limit?: number | null; draining?: boolean }>(
    platformControlSchema(settings.limit),
    req.body,
  );
  return { status: 200, body: await ctx.placement.control(name, change) };
};
