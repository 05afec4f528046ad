import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ExclusionReason, Exclusions } from '../domain/platform-choice';
import { RedisScript } from '../redis-script';
import { applyKeyChanges, KeyChange } from '../store/bot-changes';

/**
 * The global FIFO queue of bots waiting for any platform to free capacity (docs/invariants.md, queue),
 * kept entirely in Redis so the dispatcher never reads the database:
 * - `order` ranks bots by creation time, so a bot handed back after a failed attempt keeps its place;
 * - `since` holds when it last entered, for GLOBAL_QUEUE_TIMEOUT_MS;
 * - `excluded` records, per bot, the platforms it must not be offered again and why (`failed` or
 *   `timed-out`); a bot whose every platform only timed out may start over (src/domain/platform-choice.ts);
 * - `inflight` marks an assignment between "job added" and "removed from the queue", so a dispatcher that
 *   dies in between is finished by the next run instead of assigning the bot twice;
 * - `full:<platform>` says a platform answered "no capacity" a moment ago (it expires by itself), so the
 *   dispatcher offers it nothing until then although our own count shows room.
 */
export interface GlobalQueue {
  /** Adds the bot if absent, in one step: whether it was added, and its 1-based position then. */
  add(botId: string, createdAtMs: number, nowMs?: number): Promise<{ added: boolean; position: number }>;
  /** Removes the bot and everything kept about it (it ended). */
  forget(botId: string): Promise<void>;
  /** The same as key changes, for a bot's end to make in the step that ends it. */
  forgetChanges(botId: string): KeyChange[];
  /** Bot ids in FIFO order, from `offset`. */
  head(offset: number, count: number): Promise<string[]>;
  /** 1-based position, or null when the bot is not queued. */
  position(botId: string): Promise<number | null>;
  /** Bots that entered the queue at or before `beforeMs`. */
  waitingSince(beforeMs: number, count: number): Promise<string[]>;
  exclude(botId: string, platform: string, why: ExclusionReason): Promise<void>;
  excludedOf(botIds: string[]): Promise<Exclusions[]>;
  /** Forgets the bot's `timed-out` exclusions, keeping the `failed` ones. */
  forgiveTimeouts(botId: string): Promise<void>;
  markInflight(assignments: Array<{ botId: string; platform: string }>): Promise<void>;
  /** Removes the bots from the queue and clears their in-flight marks, in one step. */
  completeAssignments(botIds: string[]): Promise<void>;
  /** Clears in-flight marks only: the bots stay wherever the queue has them. */
  clearInflight(botIds: string[]): Promise<void>;
  inflight(): Promise<Record<string, string>>;
  /** The platform said it has no room: offer it nothing for `forMs`. */
  markFull(platform: string, forMs: number): Promise<void>;
  /** Which of `platforms` are marked full now. */
  fullPlatforms(platforms: string[]): Promise<Set<string>>;
  stats(): Promise<{ length: number; oldestQueuedAt: string | null }>;
  /** Per bot id: whether the queue holds it (waiting, or in the middle of an assignment). */
  holds(botIds: string[]): Promise<boolean[]>;
  /**
   * Whether the queue has been rebuilt from the durable record since Redis last lost its data. The mark
   * lives in Redis, so a flush or failover removes it, and the dispatcher waits until recovery sets it again.
   */
  isRebuilt(): Promise<boolean>;
  /** A recovery pass starts rebuilding: returns its token for markRebuilt. */
  beginRebuild(): Promise<string>;
  /**
   * Marks the queue rebuilt if Redis kept the rebuild's token since beginRebuild (it lost nothing during the
   * pass) and no later rebuild took over; false otherwise, and the next pass rebuilds again.
   */
  markRebuilt(token: string): Promise<boolean>;
}

/** KEYS: order, since. ARGV: botId, created at, now. */
const ADD = new RedisScript(`
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1])
return {added, redis.call('ZRANK', KEYS[1], ARGV[1])}`);

const MARK_REBUILT = new RedisScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1`);

export function createGlobalQueue(redis: Redis, prefix: string): GlobalQueue {
  const order = `${prefix}:gq:order`;
  const since = `${prefix}:gq:since`;
  const excluded = `${prefix}:gq:excluded`;
  const inflight = `${prefix}:gq:inflight`;
  const rebuilt = `${prefix}:gq:rebuilt`;
  const rebuilding = `${prefix}:gq:rebuilding`;
  const forgetChanges = (botId: string): KeyChange[] => [
    { op: 'zrem', key: order, member: botId },
    { op: 'zrem', key: since, member: botId },
    { op: 'hdel', key: excluded, member: botId },
    { op: 'hdel', key: inflight, member: botId },
  ];
  return {
    async add(botId, createdAtMs, nowMs = Date.now()) {
      const [added, rank] = (await ADD.run(redis, 2, order, since, botId, createdAtMs, nowMs)) as [number, number];
      return { added: added === 1, position: rank + 1 };
    },
    async forget(botId) {
      await applyKeyChanges(redis.multi(), forgetChanges(botId)).exec();
    },
    forgetChanges,
    head: (offset, count) => redis.zrange(order, offset, offset + count - 1),
    async position(botId) {
      const rank = await redis.zrank(order, botId);
      return rank === null ? null : rank + 1;
    },
    waitingSince: (beforeMs, count) => redis.zrangebyscore(since, '-inf', beforeMs, 'LIMIT', 0, count),
    async exclude(botId, platform, why) {
      const current = JSON.parse((await redis.hget(excluded, botId)) ?? '{}') as Exclusions;
      await redis.hset(excluded, botId, JSON.stringify({ ...current, [platform]: why }));
    },
    async excludedOf(botIds) {
      if (botIds.length === 0) return [];
      const values = await redis.hmget(excluded, ...botIds);
      return values.map((value) => (value ? (JSON.parse(value) as Exclusions) : {}));
    },
    async forgiveTimeouts(botId) {
      const current = JSON.parse((await redis.hget(excluded, botId)) ?? '{}') as Exclusions;
      const failedOnly = Object.fromEntries(Object.entries(current).filter(([, why]) => why === 'failed'));
      await redis.hset(excluded, botId, JSON.stringify(failedOnly));
    },
    async markInflight(assignments) {
      if (assignments.length)
        await redis.hset(inflight, Object.fromEntries(assignments.map(({ botId, platform }) => [botId, platform])));
    },
    async completeAssignments(botIds) {
      if (botIds.length)
        await redis
          .multi()
          .zrem(order, ...botIds)
          .zrem(since, ...botIds)
          .hdel(inflight, ...botIds)
          .exec();
    },
    async clearInflight(botIds) {
      if (botIds.length) await redis.hdel(inflight, ...botIds);
    },
    inflight: () => redis.hgetall(inflight),
    async holds(botIds) {
      if (botIds.length === 0) return [];
      const batch = redis.pipeline();
      for (const botId of botIds) batch.zscore(order, botId).hexists(inflight, botId);
      const replies = (await batch.exec()) ?? [];
      return botIds.map((_, i) => replies[2 * i]?.[1] !== null || replies[2 * i + 1]?.[1] === 1);
    },
    isRebuilt: async () => (await redis.exists(rebuilt)) === 1,
    async beginRebuild() {
      const token = randomBytes(8).toString('hex');
      await redis.set(rebuilding, token);
      return token;
    },
    async markRebuilt(token) {
      return (await MARK_REBUILT.run(redis, 2, rebuilding, rebuilt, token, new Date().toISOString())) === 1;
    },
    async markFull(platform, forMs) {
      await redis.set(`${prefix}:gq:full:${platform}`, '1', 'PX', forMs);
    },
    async fullPlatforms(platforms) {
      if (platforms.length === 0) return new Set();
      const marks = await redis.mget(...platforms.map((platform) => `${prefix}:gq:full:${platform}`));
      return new Set(platforms.filter((_, index) => marks[index] !== null));
    },
    async stats() {
      const [length, oldest] = await Promise.all([redis.zcard(order), redis.zrange(since, 0, 0, 'WITHSCORES')]);
      return { length, oldestQueuedAt: oldest.length ? new Date(Number(oldest[1])).toISOString() : null };
    },
  };
}
