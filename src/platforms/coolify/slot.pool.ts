import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { MeetingPlatform } from '../../domain/bot.lifecycle';
import { SlotRecord, SlotState } from './slot.records';
import { RedisScript, RENEW_LOCK } from '../../redis-script';

/**
 * The pool's working state in Redis, where every state change of a slot is decided by one Lua script, so
 * concurrent processes agree on who holds which slot. Per fleet:
 * - `state` slot → IDLE | STARTING | BUSY | ERROR, and `platform` slot → meeting platform (its image);
 * - `holder` slot → the bot attempt holding it, and `assigned` attempt → slot (the reverse);
 * - `idle:<meeting platform>`: the idle slots of that image, scored by when they were last used (LRU first);
 * - `stopping:<slot>` → the token of the one caller stopping its holder's application, a lease its holder
 *   renews (RENEW_LOCK): one stop per holder runs at a time, and none starts once the holder left, so a late
 *   or duplicate stop never reaches the slot's next bot. Leaving the holder deletes it; the claim of a
 *   process that died expires;
 * - `built`: set once the above was loaded from the slot records. Redis may lose its data; a script finding
 *   `built` missing answers "rebuild" and the caller reloads it from MongoDB first (rebuild()).
 * The idle set key is derived inside the scripts from the slot's platform (a single Redis, not a cluster).
 */
export interface SlotClaim {
  /** `existing`: the attempt already held it (a retried deploy); `reimage`: an idle slot of another image. */
  kind: 'existing' | 'idle' | 'new' | 'reimage';
  slot: string;
}

const ACQUIRE = new RedisScript(`
if redis.call('EXISTS', KEYS[5]) == 0 then return {'rebuild'} end
local existing = redis.call('HGET', KEYS[3], ARGV[1])
if existing then return {'existing', existing} end
local function take(slot, kind)
  redis.call('HSET', KEYS[1], slot, 'STARTING')
  redis.call('HSET', KEYS[2], slot, ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], slot)
  redis.call('HSET', KEYS[4], slot, ARGV[4])
  return {kind, slot}
end
local idle = redis.call('ZRANGE', KEYS[6], 0, 0)
if idle[1] then
  redis.call('ZREM', KEYS[6], idle[1])
  return take(idle[1], 'idle')
end
if redis.call('HLEN', KEYS[1]) < tonumber(ARGV[2]) then return take(ARGV[3], 'new') end
-- The pool is full: the least recently used idle slot of another image is re-imaged rather than the bot
-- turned away while capacity sits idle.
local best, bestKey, bestScore
for i = 7, #KEYS do
  local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if head[1] and (best == nil or tonumber(head[2]) < bestScore) then
    best, bestKey, bestScore = head[1], KEYS[i], tonumber(head[2])
  end
end
if best then
  redis.call('ZREM', bestKey, best)
  return take(best, 'reimage')
end
return {'full'}`);

/** A warm slot for recovery: STARTING with no holder until its application exists. */
const RESERVE = new RedisScript(`
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'STARTING')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1`);

/**
 * Moves a slot to a state if it is held by ARGV[2] ('' = by nobody); leaving a holder clears the assignment
 * and any stop claim. A start that a running stop overtook does not become BUSY.
 */
const SETTLE = new RedisScript(`
if redis.call('EXISTS', KEYS[5]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then return 0 end
local holder = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if holder ~= ARGV[2] then return 0 end
if ARGV[3] == 'BUSY' then
  if state ~= 'STARTING' or holder == '' or redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], 'BUSY')
  return 1
end
if holder ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], holder)
  redis.call('DEL', KEYS[6])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local idleKey = ARGV[5] .. redis.call('HGET', KEYS[4], ARGV[1])
if ARGV[3] == 'IDLE' then redis.call('ZADD', idleKey, ARGV[4], ARGV[1]) else redis.call('ZREM', idleKey, ARGV[1]) end
return 1`);

/**
 * Claims the stop of the application of a slot held by ARGV[2] for ARGV[3] ms under token ARGV[4]: 1
 * claimed, 0 the holder left (stopped by someone else, or never held it), 2 another caller's claim runs.
 */
const CLAIM_STOP = new RedisScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
if redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[3]) then return 1 end
return 2`);

/** Removes a slot that is held by nobody from every structure. */
const FORGET = new RedisScript(`
if (redis.call('HGET', KEYS[2], ARGV[1]) or '') ~= '' then return 0 end
local platform = redis.call('HGET', KEYS[4], ARGV[1])
if platform then redis.call('ZREM', ARGV[2] .. platform, ARGV[1]) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1`);

/** Loads the records (ARGV[2], JSON) unless another process already did since the data was lost. */
const REBUILD = new RedisScript(`
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
for _, record in ipairs(cjson.decode(ARGV[2])) do
  redis.call('HSET', KEYS[1], record.slot, record.state)
  redis.call('HSET', KEYS[4], record.slot, record.platform)
  if record.holder ~= '' then
    redis.call('HSET', KEYS[2], record.slot, record.holder)
    redis.call('HSET', KEYS[3], record.holder, record.slot)
  end
  if record.state == 'IDLE' then redis.call('ZADD', ARGV[1] .. record.platform, record.lastUsed, record.slot) end
end
redis.call('SET', KEYS[5], '1')
return 1`);

export interface SlotView {
  slot: string;
  state: SlotState;
  holder: string | null;
  meetingPlatform: MeetingPlatform;
}

export function createSlotPool(options: {
  redis: Redis;
  prefix: string;
  fleetId: string;
  limit: number;
  meetingPlatforms: readonly MeetingPlatform[];
  /** Reads every slot record of the fleet, for a rebuild. */
  records: () => Promise<SlotRecord[]>;
}) {
  const { redis } = options;
  const base = `${options.prefix}:coolify:${options.fleetId}`;
  const keys = {
    state: `${base}:state`,
    holder: `${base}:holder`,
    assigned: `${base}:assigned`,
    platform: `${base}:platform`,
    built: `${base}:built`,
    stoppingPrefix: `${base}:stopping:`,
    idlePrefix: `${base}:idle:`,
  };
  const core = [keys.state, keys.holder, keys.assigned, keys.platform, keys.built];

  const rebuild = async () => {
    const records = await options.records();
    const payload = records.map((r) => ({
      slot: r._id,
      state: r.state,
      platform: r.meetingPlatform,
      holder: r.state === 'STARTING' || r.state === 'BUSY' ? (r.deploymentName ?? '') : '',
      lastUsed: r.lastUsedAt?.getTime() ?? 0,
    }));
    return (await REBUILD.run(redis, 5, ...core, keys.idlePrefix, JSON.stringify(payload))) === 1;
  };
  /** Runs a script, rebuilding first when it says Redis lost the pool. */
  const withRebuild = async <T>(run: () => Promise<T>, needsRebuild: (result: T) => boolean): Promise<T> => {
    const result = await run();
    if (!needsRebuild(result)) return result;
    await rebuild();
    return run();
  };
  const newSlotName = (meetingPlatform: MeetingPlatform) =>
    `mb-slot-${options.fleetId}-${meetingPlatform}-${randomBytes(3).toString('hex')}`;

  return {
    keys,
    /** Loads Redis from the records if it lost them; true when this call did the load. */
    async ensureBuilt() {
      return (await redis.exists(keys.built)) ? false : rebuild();
    },
    /** The attempt's own slot, else the LRU idle slot of its image, else a new one, else a re-imaged one. */
    async acquire(deploymentName: string, meetingPlatform: MeetingPlatform): Promise<SlotClaim | null> {
      const others = options.meetingPlatforms.filter((p) => p !== meetingPlatform).map((p) => keys.idlePrefix + p);
      const result = await withRebuild(
        () =>
          ACQUIRE.run(
            redis,
            6 + others.length,
            ...core,
            keys.idlePrefix + meetingPlatform,
            ...others,
            deploymentName,
            options.limit,
            newSlotName(meetingPlatform),
            meetingPlatform,
          ) as Promise<string[]>,
        (answer) => answer[0] === 'rebuild',
      );
      return result[0] === 'full' ? null : { kind: result[0] as SlotClaim['kind'], slot: result[1] };
    },
    /** Reserves a new warm slot while the pool is under its limit; null when it is full. */
    async reserve(meetingPlatform: MeetingPlatform): Promise<string | null> {
      const slot = newSlotName(meetingPlatform);
      const got = await withRebuild(
        () =>
          RESERVE.run(
            redis,
            3,
            keys.state,
            keys.platform,
            keys.built,
            slot,
            options.limit,
            meetingPlatform,
          ) as Promise<number>,
        (answer) => answer === -1,
      );
      return got === 1 ? slot : null;
    },
    /** Moves `slot` to `state` if `holder` (null: nobody) holds it; false when it does not. */
    async settle(slot: string, holder: string | null, state: SlotState): Promise<boolean> {
      const result = await withRebuild(
        () =>
          SETTLE.run(
            redis,
            6,
            ...core,
            keys.stoppingPrefix + slot,
            slot,
            holder ?? '',
            state,
            Date.now(),
            keys.idlePrefix,
          ) as Promise<number>,
        (answer) => answer === -1,
      );
      return result === 1;
    },
    /**
     * Claims the stop of `holder`'s application on `slot` for `leaseMs` (renewStop extends it; it ends when a
     * settle moves the holder out). `another`: a stop of the same holder runs; ask again, it may lapse.
     */
    async claimStop(
      slot: string,
      holder: string,
      leaseMs: number,
    ): Promise<{ outcome: 'claimed'; token: string } | { outcome: 'not-held' | 'another' }> {
      const token = randomBytes(8).toString('hex');
      const result = await withRebuild(
        () =>
          CLAIM_STOP.run(
            redis,
            3,
            keys.holder,
            keys.built,
            keys.stoppingPrefix + slot,
            slot,
            holder,
            leaseMs,
            token,
          ) as Promise<number>,
        (answer) => answer === -1,
      );
      return result === 1 ? { outcome: 'claimed', token } : { outcome: result === 2 ? 'another' : 'not-held' };
    },
    /** Extends a stop claim for `leaseMs` from now; false when it is no longer this claim (lapsed and taken, or settled). */
    async renewStop(slot: string, token: string, leaseMs: number): Promise<boolean> {
      return (await RENEW_LOCK.run(redis, 1, keys.stoppingPrefix + slot, token, leaseMs)) === 1;
    },
    async forget(slot: string): Promise<boolean> {
      return (
        (await FORGET.run(redis, 4, keys.state, keys.holder, keys.assigned, keys.platform, slot, keys.idlePrefix)) === 1
      );
    },
    /** The slot an attempt holds, or null. */
    async slotOf(deploymentName: string): Promise<string | null> {
      await this.ensureBuilt();
      return redis.hget(keys.assigned, deploymentName);
    },
    async view(slot: string): Promise<SlotView | null> {
      await this.ensureBuilt();
      const [state, holder, meetingPlatform] = await redis
        .multi()
        .hget(keys.state, slot)
        .hget(keys.holder, slot)
        .hget(keys.platform, slot)
        .exec()
        .then((replies) => (replies ?? []).map(([, value]) => value as string | null));
      return state
        ? {
            slot,
            state: state as SlotState,
            holder: holder || null,
            meetingPlatform: meetingPlatform as MeetingPlatform,
          }
        : null;
    },
    async all(): Promise<SlotView[]> {
      await this.ensureBuilt();
      const [states, holders, platforms] = await Promise.all([
        redis.hgetall(keys.state),
        redis.hgetall(keys.holder),
        redis.hgetall(keys.platform),
      ]);
      return Object.entries(states).map(([slot, state]) => ({
        slot,
        state: state as SlotState,
        holder: holders[slot] || null,
        meetingPlatform: platforms[slot] as MeetingPlatform,
      }));
    },
    idleCount: (meetingPlatform: MeetingPlatform) => redis.zcard(keys.idlePrefix + meetingPlatform),
  };
}

export type SlotPool = ReturnType<typeof createSlotPool>;
