import { ChainableCommander, Redis } from 'ioredis';
import { onReconnected } from '../connections';
import { RedisScript } from '../redis-script';

/**
 * Redis decides, MongoDB records in batches: each bot's live document lives in a Redis hash with a version,
 * and every accepted change is appended, in the same script, to one of a few partition streams that a
 * flusher (./flusher.ts) writes to MongoDB. A change is decided in TypeScript on the version read and
 * accepted only if no other change came in between (optimistic concurrency), so Redis, which runs one script
 * at a time, is the only arbiter and MongoDB never needs a conditional update (FerretDB applies one as an
 * unlocked read-then-write, so two of them at once can both pass).
 *
 * Keys: `<prefix>:bot:<id>` (hash: version, doc as JSON, at) and `<prefix>:changes:<partition>` (stream).
 */
export interface BotChanges {
  readonly partitions: number;
  /** The key naming the bot of a per-fleet bot number (see bot-numbers.ts). */
  numberKey(number: number): string;
  /** The live document and its version, in one round trip; null if the bot was never created. */
  read<T>(botId: string): Promise<Live<T> | null>;
  /**
   * Sets the document if the bot is still at `expectedVersion` (0: it must not exist yet) and appends the
   * change to the bot's partition stream; otherwise answers the version found. With a `claim`, only if its
   * key is free too (else answers what holds it): the key is then set in the same step, and its record
   * appended to the stream, for the flusher to keep in MongoDB.
   */
  apply(
    botId: string,
    expectedVersion: number,
    doc: unknown,
    event?: object,
    expireMs?: number,
    alongside?: KeyChange[],
    claim?: Claim,
  ): Promise<Applied | Conflict | Taken>;
  /**
   * Puts a document MongoDB holds back into Redis at the version MongoDB has, unless Redis holds the bot
   * already (it lost its data, or the hash of an ended bot expired), or its create was undone; appends
   * nothing. True if it was seeded.
   */
  seed(botId: string, version: number, doc: unknown): Promise<boolean>;
  /**
   * Puts a document MongoDB holds back into Redis if Redis holds the bot at an older version (or the same
   * version decided earlier, by Redis's clock), or not at all, unless its create was undone; appends nothing.
   * For a Redis that lost its last writes (see BotRepository.repairLostWrites). Answers the document Redis
   * held before (null if none) when it was put back, undefined when Redis kept its own.
   */
  restore<T>(botId: string, version: number, at: number, doc: unknown, expireMs: number): Promise<T | null | undefined>;
  /**
   * Appends records that are not versions of a bot to its partition stream, in one round trip: an event
   * (with its `_id` chosen here, so a replay writes it once), or a live-index mark or unmark.
   */
  append(records: StreamRecord[]): Promise<void>;
  /**
   * Undoes a create, in one step: drops the bot, and the name its number gives it, from Redis, frees
   * `claimKey` if its claim names this bot, and appends the removal (with the claim's record, if freed) to
   * the bot's stream. The flusher writes a stream in order, so it writes the removal after the bot's create,
   * its events and its claim, however late, and deletes from MongoDB whatever it wrote of them (a record a
   * later claim of the key wrote stays). Answers the removal's mark, to wait for with waitFlushed.
   */
  forget(botId: string, number?: number, claimKey?: string): Promise<Mark>;
  /**
   * Whether the bot's create was undone (forget) within REMOVAL_MARK_MS: until the flusher writes the removal,
   * MongoDB may still hold the bot, which must not be read back, placed or put back into Redis meanwhile.
   */
  wasRemoved(botId: string): Promise<boolean>;
  /** See connections.ts `onReconnected`: for this connection. */
  onReconnected(listener: (lostAt: number, sameServer: Promise<boolean>) => void): void;
  /** The live documents of these bots, in order (null where Redis holds none), in one round trip. */
  readMany<T>(botIds: string[]): Promise<Array<T | null>>;
  /** read → decide → apply, again on a conflict, at most `maxAttempts` times (then throws). */
  update<T>(botId: string, decide: (current: Live<T> | null) => Change<T> | Refusal): Promise<Updated<T> | Refusal>;
  /**
   * Resolves true once MongoDB holds every change up to the marks (`'now'`: every change applied before the
   * call), false if that takes longer than `timeoutMs`; for reading one's own writes from MongoDB.
   */
  waitFlushed(marks: Mark[] | 'now', timeoutMs: number): Promise<boolean>;
  /**
   * The bot's entries that MongoDB may not hold yet (its partition stream, which the flusher trims once
   * written), in stream order; null when the stream is longer than `scanAtMost` (a flusher far behind).
   */
  unflushed(botId: string, scanAtMost?: number): Promise<StreamEntry[] | null>;
}

/** A stream entry as Redis gives it: its id and its fields as name, value, name, value… */
export type StreamEntry = [string, string[]];

export interface Live<T> {
  doc: T;
  version: number;
  /** When the version was set, in ms by Redis's clock. */
  at: number;
}

export interface Change<T> {
  doc: T;
  /** Recorded as one event of this version (see flusher.ts for its `_id`). */
  event?: object;
  /** Lets Redis forget the bot this long after the change (an ended bot); otherwise it is kept. */
  expireMs?: number;
  /** Made in the same step as the change, and only if it is accepted (the due-sets of live-state.ts, the end signal). */
  alongside?: KeyChange[];
}

/**
 * A change to another key that follows from a bot's change: a member of a (sorted) set or hash added or
 * removed, a sorted set's entries up to a score dropped (`ztrim`), a message published on a channel, a
 * string key set, or a key given a lifetime of `score` ms (`pexpire`).
 */
export type KeyChange =
  | { op: 'zadd'; key: string; score: number; member: string }
  | { op: 'zrem' | 'srem' | 'hdel'; key: string; member: string }
  | { op: 'ztrim' | 'pexpire'; key: string; score: number }
  | { op: 'publish' | 'set'; key: string; member: string };

/** What the APPLY script takes: the key changes, and a claim as one of them. */
type ScriptChange = KeyChange | { op: 'claim'; key: string; score: number; member: string };

/** Queues the key changes on a MULTI or pipeline. */
export function applyKeyChanges<T extends ChainableCommander>(batch: T, changes: KeyChange[]): T {
  for (const change of changes) {
    if (change.op === 'zadd') batch.zadd(change.key, change.score, change.member);
    else if (change.op === 'zrem') batch.zrem(change.key, change.member);
    else if (change.op === 'srem') batch.srem(change.key, change.member);
    else if (change.op === 'hdel') batch.hdel(change.key, change.member);
    else if (change.op === 'ztrim') batch.zremrangebyscore(change.key, '-inf', change.score);
    else if (change.op === 'pexpire') batch.pexpire(change.key, change.score);
    else if (change.op === 'set') batch.set(change.key, change.member);
    else if (change.op === 'publish') batch.publish(change.key, change.member);
  }
  return batch;
}

/**
 * A key that must be free for the change to be made, then holds `value` (a JSON object naming the bot as
 * `botId`) for `lifetimeMs`: an Idempotency-Key taken by the bot it creates. The value also goes to the bot's partition stream, so that the
 * flusher keeps it in MongoDB (the record a Redis that lost its data is rebuilt from).
 */
export interface Claim {
  key: string;
  value: string;
  lifetimeMs: number;
}

export type StreamRecord =
  | { botId: string; kind: 'event'; event: { _id: string } & Record<string, unknown> }
  | { botId: string; kind: 'live'; createdAt: Date }
  | { botId: string; kind: 'unlive' };

export interface Refusal {
  refused: string;
}

/** A position in a partition stream: a change's own entry, or the end of the stream at some moment. */
export interface Mark {
  partition: number;
  id: string;
}

export interface Applied {
  version: number;
  at: number;
  mark: Mark;
}

export interface Conflict {
  conflict: { version: number };
}

/** A claim's key was held already: by `value`. */
export interface Taken {
  taken: { value: string };
}

export type Updated<T> = Applied & { doc: T };

export class UpdateConflictError extends Error {
  constructor(botId: string, attempts: number) {
    super(`bot ${botId} changed under ${attempts} attempts in a row`);
  }
}

export const botKey = (prefix: string, botId: string) => `${prefix}:bot:${botId}`;
export const botNumberKey = (prefix: string, number: number) => `${prefix}:bot-number:${number}`;
export const changesKey = (prefix: string, partition: number) => `${prefix}:changes:${partition}`;
/** Says a bot's create was undone (see BotChanges.forget), for REMOVAL_MARK_MS. */
export const botRemovedKey = (prefix: string, botId: string) => `${prefix}:bot-removed:${botId}`;
/**
 * How long an undone create's mark stays: far longer than the flusher can lag, which is how long MongoDB may
 * still hold what it wrote of the bot before it writes the removal.
 */
const REMOVAL_MARK_MS = 24 * 3600 * 1000;
/** The last entry of the partition stream that MongoDB holds, with every entry before it (set by the flusher). */
export const flushedKey = (prefix: string, partition: number) => `${prefix}:flushed:${partition}`;

/** Stream ids are `<ms>-<seq>`; compared as numbers, not as strings. */
export function compareIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(Number);
  const [bMs, bSeq] = b.split('-').map(Number);
  return aMs - bMs || aSeq - bSeq;
}

/** FNV-1a: stable across processes and releases, so a bot always lands in the same partition. */
export function partitionOf(botId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < botId.length; i++) {
    hash ^= botId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

/**
 * KEYS: bot hash, partition stream, then the key (or channel) of each key change. ARGV: botId, expected version, doc
 * JSON, event JSON or '', ms to expire after (0: never), the number of key changes, then op, score ('' but
 * for zadd, ztrim, pexpire and claim) and member ('' for ztrim and pexpire) of each. The time comes from Redis so that versions and times agree across processes
 * with skewed clocks. A bot Redis did not hold is new (an insert); one seeded from MongoDB is not. A `claim`
 * (see Claim) is checked before anything is written: a key held already answers {2, its value}.
 */
const APPLY = new RedisScript(`
local stored = redis.call('HGET', KEYS[1], 'version')
local current = tonumber(stored or '0')
if current ~= tonumber(ARGV[2]) then return {0, current} end
for i = 1, tonumber(ARGV[6]) do
  if ARGV[4 + 3 * i] == 'claim' then
    local held = redis.call('GET', KEYS[2 + i])
    if held then return {2, held} end
  end
end
local now = redis.call('TIME')
local at = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))
local version = string.format('%d', current + 1)
redis.call('HSET', KEYS[1], 'version', version, 'doc', ARGV[3], 'at', at)
if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) else redis.call('PERSIST', KEYS[1]) end
local kind = 'snapshot'
if not stored then kind = 'insert' end
local id
if ARGV[4] == '' then
  id = redis.call('XADD', KEYS[2], '*', 'bot', ARGV[1], 'version', version, 'kind', kind, 'at', at, 'doc', ARGV[3])
else
  id = redis.call('XADD', KEYS[2], '*', 'bot', ARGV[1], 'version', version, 'kind', kind, 'at', at, 'doc', ARGV[3], 'event', ARGV[4])
end
for i = 1, tonumber(ARGV[6]) do
  local op, score, member, key = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i], KEYS[2 + i]
  if op == 'zadd' then redis.call('ZADD', key, score, member)
  elseif op == 'zrem' then redis.call('ZREM', key, member)
  elseif op == 'srem' then redis.call('SREM', key, member)
  elseif op == 'hdel' then redis.call('HDEL', key, member)
  elseif op == 'ztrim' then redis.call('ZREMRANGEBYSCORE', key, '-inf', score)
  elseif op == 'pexpire' then redis.call('PEXPIRE', key, score)
  elseif op == 'set' then redis.call('SET', key, member)
  elseif op == 'claim' then
    redis.call('SET', key, member, 'PX', score)
    redis.call('XADD', KEYS[2], '*', 'bot', ARGV[1], 'kind', 'claim', 'claim', member)
  else redis.call('PUBLISH', key, member) end
end
return {1, version, at, id}`);

/**
 * KEYS: the bot's partition stream, its hash, its removal mark, then its claim's key if ARGV[2] is '1', then
 * the key its number names it by, if any. ARGV: the bot's id, '1' if it has a claim's key, ms to keep the
 * mark. Frees the key only if its claim names the bot (see BotChanges.forget); answers the removal's stream id.
 */
const FORGET = new RedisScript(`
local held, numberAt = false, 4
if ARGV[2] == '1' then held, numberAt = redis.call('GET', KEYS[4]), 5 end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
if KEYS[numberAt] then redis.call('DEL', KEYS[numberAt]) end
if held and cjson.decode(held).botId == ARGV[1] then
  redis.call('DEL', KEYS[4])
  return redis.call('XADD', KEYS[1], '*', 'bot', ARGV[1], 'kind', 'removed', 'claim', held)
end
return redis.call('XADD', KEYS[1], '*', 'bot', ARGV[1], 'kind', 'removed')`);

/** KEYS: bot hash, its removal mark. ARGV: version, doc JSON, at. */
const SEED = new RedisScript(`
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'doc', ARGV[2], 'at', ARGV[3])
return 1`);

/**
 * KEYS: bot hash, its removal mark. ARGV: version, doc JSON, at, ms to expire after (0: never). Answers {0} if
 * Redis's own version is as new, else {1, the document it held or false}.
 */
const RESTORE = new RedisScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
local held = redis.call('HMGET', KEYS[1], 'version', 'at', 'doc')
local version, at = tonumber(held[1] or '0'), tonumber(held[2] or '0')
if version > tonumber(ARGV[1]) or (version == tonumber(ARGV[1]) and at >= tonumber(ARGV[3])) then return {0} end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'doc', ARGV[2], 'at', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) else redis.call('PERSIST', KEYS[1]) end
return {1, held[3]}`);

/**
 * The last entry id of each stream in KEYS, in one round trip. The flusher trims what it has written, so an
 * empty stream ('0-0') has nothing left to wait for.
 */
const MARKS = new RedisScript(`
local ids = {}
for i, key in ipairs(KEYS) do
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  ids[i] = last and last[1] or '0-0'
end
return ids`);

/**
 * KEYS: a partition stream. ARGV: botId, how many entries to scan at most. Filters in Redis, so a request
 * does not carry the backlog of every other bot. Answers {1, entries}, or {0} if the stream is longer.
 */
const UNFLUSHED = new RedisScript(`
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[2]) + 1)
if #entries > tonumber(ARGV[2]) then return {0} end
local mine = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if fields[1] == 'bot' and fields[2] == ARGV[1] then mine[#mine + 1] = entry end
end
return {1, mine}`);

export interface BotChangesOptions {
  /** Number of partition streams (and so of flushers writing at once); every process must agree. */
  partitions?: number;
  maxAttempts?: number;
}

const FLUSH_POLL_MS = 20;

export function createBotChanges(redis: Redis, prefix: string, options: BotChangesOptions = {}): BotChanges {
  const partitions = options.partitions ?? 4;
  const maxAttempts = options.maxAttempts ?? 50;

  const streamEnds = async (): Promise<Mark[]> => {
    const keys = Array.from({ length: partitions }, (_, partition) => changesKey(prefix, partition));
    const ids = (await MARKS.run(redis, keys.length, ...keys)) as string[];
    return ids.map((id, partition) => ({ partition, id }));
  };

  const changes: BotChanges = {
    partitions,
    numberKey: (number) => botNumberKey(prefix, number),
    async read<T>(botId: string) {
      const [version, doc, at] = await redis.hmget(botKey(prefix, botId), 'version', 'doc', 'at');
      if (version === null || doc === null) return null;
      return { doc: JSON.parse(doc) as T, version: Number(version), at: Number(at) };
    },
    async apply(botId, expectedVersion, doc, event, expireMs = 0, keyChanges = [], claim) {
      const partition = partitionOf(botId, partitions);
      const alongside: ScriptChange[] = claim
        ? [...keyChanges, { op: 'claim', key: claim.key, score: claim.lifetimeMs, member: claim.value }]
        : keyChanges;
      const answer = (await APPLY.run(
        redis,
        2 + alongside.length,
        botKey(prefix, botId),
        changesKey(prefix, partition),
        ...alongside.map((change) => change.key),
        botId,
        expectedVersion,
        JSON.stringify(doc),
        event === undefined ? '' : JSON.stringify(event),
        Math.max(0, Math.floor(expireMs)),
        alongside.length,
        ...alongside.flatMap((change) => [
          change.op,
          'score' in change ? change.score : '',
          'member' in change ? change.member : '',
        ]),
      )) as [number, number | string] | [number, string, string, string];
      if (answer[0] === 0) return { conflict: { version: Number(answer[1]) } };
      if (answer[0] === 2) return { taken: { value: String(answer[1]) } };
      const [, version, at, id] = answer as [number, string, string, string];
      return { version: Number(version), at: Number(at), mark: { partition, id } };
    },
    async seed(botId, version, doc) {
      const keys = [botKey(prefix, botId), botRemovedKey(prefix, botId)];
      return (await SEED.run(redis, 2, ...keys, version, JSON.stringify(doc), Date.now())) === 1;
    },
    async restore<T>(botId: string, version: number, at: number, doc: unknown, expireMs: number) {
      const keys = [botKey(prefix, botId), botRemovedKey(prefix, botId)];
      const answer = (await RESTORE.run(redis, 2, ...keys, version, JSON.stringify(doc), at, Math.floor(expireMs))) as
        [0] | [1, string | null];
      if (answer[0] === 0) return undefined;
      return answer[1] ? (JSON.parse(answer[1]) as T) : null;
    },
    async append(records) {
      if (records.length === 0) return;
      const batch = redis.pipeline();
      for (const record of records) {
        const stream = changesKey(prefix, partitionOf(record.botId, partitions));
        if (record.kind === 'event')
          batch.xadd(stream, '*', 'bot', record.botId, 'kind', 'event', 'event', JSON.stringify(record.event));
        else if (record.kind === 'live')
          batch.xadd(stream, '*', 'bot', record.botId, 'kind', 'live', 'at', record.createdAt.getTime());
        else batch.xadd(stream, '*', 'bot', record.botId, 'kind', 'unlive');
      }
      for (const [error] of (await batch.exec()) ?? []) if (error) throw error;
    },
    async forget(botId, number, claimKey) {
      const partition = partitionOf(botId, partitions);
      const keys = [
        changesKey(prefix, partition),
        botKey(prefix, botId),
        botRemovedKey(prefix, botId),
        ...(claimKey ? [claimKey] : []),
        ...(number ? [botNumberKey(prefix, number)] : []),
      ];
      const id = (await FORGET.run(
        redis,
        keys.length,
        ...keys,
        botId,
        claimKey ? '1' : '0',
        REMOVAL_MARK_MS,
      )) as string;
      return { partition, id };
    },
    onReconnected: (listener) => onReconnected(redis, listener),
    async wasRemoved(botId) {
      return (await redis.exists(botRemovedKey(prefix, botId))) === 1;
    },
    async readMany<T>(botIds: string[]) {
      if (botIds.length === 0) return [];
      const batch = redis.pipeline();
      for (const botId of botIds) batch.hget(botKey(prefix, botId), 'doc');
      const replies = (await batch.exec()) ?? [];
      return replies.map(([error, doc]) => {
        if (error) throw error;
        return doc === null ? null : (JSON.parse(doc as string) as T);
      });
    },
    async update<T>(botId: string, decide: (current: Live<T> | null) => Change<T> | Refusal) {
      for (let attempt = 1; attempt <= maxAttempts; attempt++) {
        const current = await changes.read<T>(botId);
        const decision = decide(current);
        if ('refused' in decision) return decision;
        const result = await changes.apply(
          botId,
          current?.version ?? 0,
          decision.doc,
          decision.event,
          decision.expireMs,
          decision.alongside,
        );
        if ('version' in result) return { ...result, doc: decision.doc };
      }
      throw new UpdateConflictError(botId, maxAttempts);
    },
    async unflushed(botId, scanAtMost = 5000) {
      const answer = (await UNFLUSHED.run(
        redis,
        1,
        changesKey(prefix, partitionOf(botId, partitions)),
        botId,
        scanAtMost,
      )) as [0] | [1, StreamEntry[]];
      return answer[0] === 1 ? answer[1] : null;
    },
    async waitFlushed(marks, timeoutMs) {
      let waiting = (marks === 'now' ? await streamEnds() : marks).filter((mark) => mark.id !== '0-0');
      const deadline = Date.now() + timeoutMs;
      while (waiting.length > 0) {
        const flushed = await redis.mget(waiting.map((mark) => flushedKey(prefix, mark.partition)));
        waiting = waiting.filter((mark, i) => compareIds(flushed[i] ?? '0-0', mark.id) < 0);
        if (waiting.length === 0) break;
        if (Date.now() >= deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, FLUSH_POLL_MS));
      }
      return true;
    },
  };
  return changes;
}
