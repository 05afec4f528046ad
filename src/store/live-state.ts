import { Redis } from 'ioredis';
import { BotStatus, isTerminal } from '../domain/bot.lifecycle';
import { RedisScript } from '../redis-script';
import { applyKeyChanges, KeyChange } from './bot-changes';

/**
 * Fast per-bot state kept in Redis rather than MongoDB, shaped for the sweeps: each is a sorted set scored
 * by the time something is due, so a sweep reads only the range that is due, never the live bots.
 * - `heartbeats`: last sign of life (heartbeat or status report) of each live bot;
 * - `deploying`: when each DEPLOYING bot was claimed (DEPLOY_TIMEOUT_MS counts from there);
 * - `leave-deadlines`: when each bot asked to leave must be gone (LEAVE_GRACE_MS);
 * - `leaving`: the set of bots asked to leave, read on every heartbeat;
 * - `ended`: bots that ended in the last 24 h (written by placement/end-signals.ts), so that a heartbeat with
 *   an ended bot's token is refused without a database read;
 * - `log-levels`: the log level each bot's owner set, answered with its heartbeats.
 */
export interface LiveState {
  /**
   * Records a heartbeat and answers whether the bot should leave, in one round trip; a bot that ended (in
   * the last 24 h) records nothing and is answered `ended`.
   */
  heartbeat(botId: string, nowMs?: number): Promise<{ ended: boolean; shouldLeave: boolean; logLevel: string | null }>;
  /** The log level the bot's owner set, answered with each heartbeat (null: the bot's own default). */
  setLogLevel(botId: string, level: string | null): Promise<void>;
  lastHeartbeat(botId: string): Promise<Date | null>;
  /**
   * What a status change does to the due-sets (a terminal one forgets the bot), for the lifecycle to make in
   * the same Redis step as the change itself; any status report also counts as a sign of life.
   */
  changesFor(botId: string, status: BotStatus, bySelf: boolean, nowMs?: number): KeyChange[];
  /** Makes `changesFor` on its own (recovery puts bots back that Redis lost). */
  statusChanged(botId: string, status: BotStatus, bySelf: boolean, nowMs?: number): Promise<void>;
  requestLeave(botId: string, deadlineMs: number): Promise<void>;
  forget(botId: string): Promise<void>;
  /** Bots whose entry in a due-set is at or before `nowMs`, oldest first. */
  due(set: DueSet, nowMs: number, count: number): Promise<string[]>;
  /** Removes the bot's entry if it is still due at `dueBefore` (a fresh heartbeat meanwhile is kept). */
  clear(set: DueSet, botId: string, dueBefore: number): Promise<void>;
  /** Moves the heartbeat and deploy deadlines these bots already have to count from `nowMs` (after a restart). */
  restartDeadlines(botIds: string[], nowMs?: number): Promise<void>;
}

/** Ended bots, scored by when they ended. */
export const endedSet = (prefix: string) => `${prefix}:ended`;

/** KEYS: ended, heartbeats, leaving, log levels. ARGV: botId, now. {-1} when ended, else {leaving, level or false}. */
const HEARTBEAT = new RedisScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {-1} end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return {redis.call('SISMEMBER', KEYS[3], ARGV[1]), redis.call('HGET', KEYS[4], ARGV[1])}`);

const CLEAR_IF_DUE = new RedisScript(`
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0`);

export type DueSet = 'heartbeats' | 'deploying' | 'leave-deadlines';

export function createLiveState(redis: Redis, prefix: string): LiveState {
  const key = (set: DueSet) => `${prefix}:${set}`;
  const leaving = `${prefix}:leaving`;
  const logLevels = `${prefix}:log-levels`;
  const changesFor: LiveState['changesFor'] = (botId, status, bySelf, nowMs = Date.now()) => {
    if (isTerminal(status)) {
      return [
        { op: 'zrem', key: key('heartbeats'), member: botId },
        { op: 'zrem', key: key('deploying'), member: botId },
        { op: 'zrem', key: key('leave-deadlines'), member: botId },
        { op: 'srem', key: leaving, member: botId },
        { op: 'hdel', key: logLevels, member: botId },
      ];
    }
    const changes: KeyChange[] = [
      status === 'DEPLOYING'
        ? { op: 'zadd', key: key('deploying'), score: nowMs, member: botId }
        : { op: 'zrem', key: key('deploying'), member: botId },
    ];
    if (bySelf) changes.push({ op: 'zadd', key: key('heartbeats'), score: nowMs, member: botId });
    return changes;
  };
  const statusChanged: LiveState['statusChanged'] = async (botId, status, bySelf, nowMs) => {
    await applyKeyChanges(redis.multi(), changesFor(botId, status, bySelf, nowMs)).exec();
  };
  return {
    async heartbeat(botId, nowMs = Date.now()) {
      const [leave, level] = (await HEARTBEAT.run(
        redis,
        4,
        endedSet(prefix),
        key('heartbeats'),
        leaving,
        logLevels,
        botId,
        nowMs,
      )) as [number, string | null];
      return { ended: leave === -1, shouldLeave: leave === 1, logLevel: level ?? null };
    },
    async setLogLevel(botId, level) {
      if (level === null) await redis.hdel(logLevels, botId);
      else await redis.hset(logLevels, botId, level);
    },
    async lastHeartbeat(botId) {
      const score = await redis.zscore(key('heartbeats'), botId);
      return score === null ? null : new Date(Number(score));
    },
    changesFor,
    statusChanged,
    async requestLeave(botId, deadlineMs) {
      await redis.multi().sadd(leaving, botId).zadd(key('leave-deadlines'), deadlineMs, botId).exec();
    },
    forget: (botId) => statusChanged(botId, 'ENDED', false),
    async restartDeadlines(botIds, nowMs = Date.now()) {
      if (botIds.length === 0) return;
      const batch = redis.pipeline();
      for (const botId of botIds)
        batch.zadd(key('heartbeats'), 'XX', nowMs, botId).zadd(key('deploying'), 'XX', nowMs, botId);
      await batch.exec();
    },
    due: (set, nowMs, count) => redis.zrangebyscore(key(set), '-inf', nowMs, 'LIMIT', 0, count),
    async clear(set, botId, dueBefore) {
      await CLEAR_IF_DUE.run(redis, 1, key(set), botId, dueBefore);
    },
  };
}
