import { Redis } from 'ioredis';

/**
 * Fast per-bot state kept in Redis rather than MongoDB: last heartbeat times (one sorted set, so the expiry
 * sweep reads only the expired range) and the set of bots asked to leave (read on every heartbeat).
 */
export interface LiveState {
  /** Records a heartbeat and answers whether the bot should leave: one round trip. */
  heartbeat(botId: string, nowMs?: number): Promise<{ shouldLeave: boolean }>;
  lastHeartbeat(botId: string): Promise<Date | null>;
  requestLeave(botId: string): Promise<void>;
  forget(botId: string): Promise<void>;
}

export function createLiveState(redis: Redis, prefix: string): LiveState {
  const heartbeats = `${prefix}:heartbeats`;
  const leaving = `${prefix}:leaving`;
  return {
    async heartbeat(botId, nowMs = Date.now()) {
      const result = await redis.multi().zadd(heartbeats, nowMs, botId).sismember(leaving, botId).exec();
      return { shouldLeave: result?.[1]?.[1] === 1 };
    },
    async lastHeartbeat(botId) {
      const score = await redis.zscore(heartbeats, botId);
      return score === null ? null : new Date(Number(score));
    },
    async requestLeave(botId) {
      await redis.sadd(leaving, botId);
    },
    async forget(botId) {
      await redis.multi().zrem(heartbeats, botId).srem(leaving, botId).exec();
    },
  };
}
