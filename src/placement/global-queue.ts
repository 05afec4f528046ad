import { Redis } from 'ioredis';

/**
 * The global FIFO queue of bots waiting for any platform to free capacity (PRODUCT.md I4).
 * Two sorted sets that always change together (MULTI): `order` ranks bots by creation time, so a bot handed
 * back after a failed attempt keeps its place; `since` holds when it last entered, for the queue timeout.
 */
export interface GlobalQueue {
  /** Adds the bot if absent. Returns true when it was added. */
  add(botId: string, createdAtMs: number, nowMs?: number): Promise<boolean>;
  remove(botId: string): Promise<void>;
  /** Bot ids in FIFO order, from `offset`. */
  head(offset: number, count: number): Promise<string[]>;
  /** 1-based position, or null when the bot is not queued. */
  position(botId: string): Promise<number | null>;
  /** Bots that entered the queue at or before `beforeMs`. */
  waitingSince(beforeMs: number, count: number): Promise<string[]>;
  stats(): Promise<{ length: number; oldestQueuedAt: string | null }>;
}

export function createGlobalQueue(redis: Redis, prefix: string): GlobalQueue {
  const order = `${prefix}:gq:order`;
  const since = `${prefix}:gq:since`;
  return {
    async add(botId, createdAtMs, nowMs = Date.now()) {
      const result = await redis.multi().zadd(order, 'NX', createdAtMs, botId).zadd(since, 'NX', nowMs, botId).exec();
      return result?.[0]?.[1] === 1;
    },
    async remove(botId) {
      await redis.multi().zrem(order, botId).zrem(since, botId).exec();
    },
    head: (offset, count) => redis.zrange(order, offset, offset + count - 1),
    async position(botId) {
      const rank = await redis.zrank(order, botId);
      return rank === null ? null : rank + 1;
    },
    waitingSince: (beforeMs, count) => redis.zrangebyscore(since, '-inf', beforeMs, 'LIMIT', 0, count),
    async stats() {
      const [length, oldest] = await Promise.all([redis.zcard(order), redis.zrange(since, 0, 0, 'WITHSCORES')]);
      return { length, oldestQueuedAt: oldest.length ? new Date(Number(oldest[1])).toISOString() : null };
    },
  };
}
