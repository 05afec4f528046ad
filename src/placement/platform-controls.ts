import { Redis } from 'ioredis';

/**
 * What an operator changed at runtime (PATCH /api/platforms/:name): a lower limit than configured, or
 * draining (no new placements; bots already there stay). Kept in Redis so every process's dispatcher obeys
 * at its next run without a restart; the configured limit stays the ceiling (the platform queue's BullMQ
 * global concurrency and each worker's concurrency are set from it at startup).
 */
export interface PlatformControl {
  limit?: number;
  draining?: boolean;
}

export interface PlatformControls {
  all(): Promise<Map<string, PlatformControl>>;
  /** Merges `change` into the platform's control; `limit: null` goes back to the configured limit. */
  update(platform: string, change: { limit?: number | null; draining?: boolean }): Promise<PlatformControl>;
}

export function createPlatformControls(redis: Redis, prefix: string): PlatformControls {
  const key = `${prefix}:platform-controls`;
  const read = async (platform: string) => JSON.parse((await redis.hget(key, platform)) ?? '{}') as PlatformControl;
  return {
    async all() {
      const entries = Object.entries(await redis.hgetall(key));
      return new Map(entries.map(([platform, value]) => [platform, JSON.parse(value) as PlatformControl]));
    },
    async update(platform, change) {
      const next = { ...(await read(platform)) };
      if (change.limit === null) delete next.limit;
      else if (change.limit !== undefined) next.limit = change.limit;
      if (change.draining !== undefined) next.draining = change.draining;
      await redis.hset(key, platform, JSON.stringify(next));
      return next;
    },
  };
}
