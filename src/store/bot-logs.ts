import { Redis } from 'ioredis';
import { RedisScript } from '../redis-script';

/**
 * What bots log through the upstream protocol (`bots.logs.stream`), kept per bot in a Redis stream with a
 * bound: at most `LOG_BOUNDS.entries` entries and `LOG_BOUNDS.bytes` bytes of entry JSON a bot. Past either,
 * the oldest entries give way to the newest, and how many did is counted and answered with every read. A
 * bot's log is kept `LOG_BOUNDS.keepMs` after its last entry (so at least that long after it ended), then
 * Redis forgets it. Logs are diagnostics, not records: they are not written to MongoDB, and a Redis that
 * lost its data lost them.
 */
export const LOG_BOUNDS = { entries: 5_000, bytes: 2 * 1024 * 1024, keepMs: 24 * 3600 * 1000 };

export const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogEntry {
  level: LogLevel;
  [field: string]: unknown;
}

export interface LogPage {
  /** Oldest first; `seq` is the entry's place in the bot's log (also the cursor of the next page). */
  data: Array<LogEntry & { seq: string }>;
  nextCursor: string | null;
  /** Entries dropped so far to keep the log within its bound. */
  dropped: number;
}

export interface BotLogs {
  /** Appends entries in order; answers how many were kept and how many older ones were dropped for them. */
  append(botId: string, entries: LogEntry[]): Promise<{ received: number; dropped: number }>;
  read(botId: string, options: { cursor?: string; limit: number; level?: LogLevel }): Promise<LogPage>;
}

/**
 * KEYS: the bot's log stream, its counters hash (bytes, dropped). ARGV: max entries, max bytes, keep ms,
 * then each entry as JSON. Appends all, then drops the oldest until both bounds hold, in one step.
 */
const APPEND = new RedisScript(`
local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
for i = 4, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
  bytes = bytes + #ARGV[i]
end
local count = redis.call('XLEN', KEYS[1])
local dropped = 0
while count > tonumber(ARGV[1]) or bytes > tonumber(ARGV[2]) do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if not oldest then break end
  bytes = bytes - #oldest[2][2]
  redis.call('XDEL', KEYS[1], oldest[1])
  count = count - 1
  dropped = dropped + 1
end
redis.call('HSET', KEYS[2], 'bytes', bytes)
if dropped > 0 then redis.call('HINCRBY', KEYS[2], 'dropped', dropped) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return dropped`);

/** How many entries a filtered read scans at most for one page. */
const SCAN_AT_MOST = 5_000;

export function createBotLogs(redis: Redis, prefix: string, bounds = LOG_BOUNDS): BotLogs {
  const streamKey = (botId: string) => `${prefix}:logs:${botId}`;
  const countersKey = (botId: string) => `${prefix}:logs:${botId}:counters`;
  return {
    async append(botId, entries) {
      if (entries.length === 0) return { received: 0, dropped: 0 };
      const dropped = Number(
        await APPEND.run(
          redis,
          2,
          streamKey(botId),
          countersKey(botId),
          bounds.entries,
          bounds.bytes,
          bounds.keepMs,
          ...entries.map((entry) => JSON.stringify(entry)),
        ),
      );
      return { received: entries.length, dropped };
    },
    async read(botId, { cursor, limit, level }) {
      const data: LogPage['data'] = [];
      let from = cursor ? `(${cursor}` : '-';
      let scanned = 0;
      let last: string | null = null;
      let exhausted = false;
      while (data.length < limit && scanned < SCAN_AT_MOST) {
        const chunk = (await redis.xrange(streamKey(botId), from, '+', 'COUNT', limit - data.length)) as Array<
          [string, string[]]
        >;
        if (chunk.length === 0) {
          exhausted = true;
          break;
        }
        for (const [seq, fields] of chunk) {
          const entry = JSON.parse(fields[1]) as LogEntry;
          if (!level || entry.level === level) data.push({ ...entry, seq });
          last = seq;
        }
        scanned += chunk.length;
        from = `(${last}`;
      }
      const more =
        !exhausted && last !== null && (await redis.xrange(streamKey(botId), `(${last}`, '+', 'COUNT', 1)).length > 0;
      const dropped = Number((await redis.hget(countersKey(botId), 'dropped')) ?? 0);
      return { data, nextCursor: more ? last : null, dropped };
    },
  };
}
