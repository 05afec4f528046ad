import { Redis } from 'ioredis';
import { isTerminal } from '../domain/bot.lifecycle';
import { logger } from '../logger';
import { RedisScript } from '../redis-script';
import { withTimeout } from '../retry';
import { botNumberKey } from './bot-changes';
import { Models } from './models';

/**
 * Per-fleet bot numbers: bot images parse `BOT_ID` with `Number()`, so each bot gets a small integer at
 * creation besides its id. The counter is a Redis key; `<prefix>:bot-number:<n>` names a number's bot,
 * written in the same step as the bot (repository `insert`) and kept as long as Redis keeps the bot.
 *
 * Redis is not the record: when it lost its data (a flush, a failover), the counter starts again above the
 * highest number MongoDB holds, and a number Redis no longer names is looked up in MongoDB and named again.
 * So neither uniqueness nor a live bot's number is lost with Redis (test/bot-numbers.test.ts).
 */
export interface BotNumbers {
  /** A number no other bot of the fleet has. */
  next(): Promise<number>;
  /** The id of the bot a number names, or null. */
  resolve(number: number): Promise<string | null>;
  /** Raises the counter to at least the highest number MongoDB holds (at startup: Redis may have lost its last writes). */
  catchUp(): Promise<void>;
}

/** KEYS: the counter. The next number, or 0 when the counter is gone (Redis lost it). */
const NEXT = new RedisScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('INCR', KEYS[1])`);

/** KEYS: the counter. ARGV: a floor. Raises the counter to the floor (creating it) if it is below. */
const RAISE = new RedisScript(`
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`);

/** A number names a bot for as long as an ended bot's document stays in Redis. */
const ENDED_NAME_MS = 24 * 3600 * 1000;

/** How long a new number waits for the check that follows a Redis reconnect (MongoDB may be slow or away). */
const CATCH_UP_WAIT_MS = 2_000;

export const BOT_NUMBER_PATTERN = /^[1-9][0-9]{0,15}$/;

export function createBotNumbers(redis: Redis, prefix: string, { Bot }: Pick<Models, 'Bot'>): BotNumbers {
  const counter = `${prefix}:bot-numbers`;

  const highestStored = async () => {
    const [top] = await Bot.find({ number: { $gt: 0 } }, { number: 1 })
      .sort({ number: -1 })
      .limit(1)
      .lean<Array<{ number: number }>>();
    return top?.number ?? 0;
  };
  const catchUp = async () => {
    await RAISE.run(redis, 1, counter, await highestStored());
  };

  // A Redis that restarted from an append-only file or failed over may come back without its last writes,
  // the counter among them, while MongoDB already holds bots numbered above it: every (re)connection checks
  // the counter again, and new numbers wait for that check (bounded: with MongoDB away, the counter Redis
  // has is the best there is).
  let catchingUp: Promise<void> | undefined;
  redis.on('ready', () => {
    catchingUp = catchUp()
      .catch((error: unknown) =>
        logger.warn('bot numbers: the counter was not checked against MongoDB after Redis reconnected', {
          error: String(error),
        }),
      )
      .finally(() => (catchingUp = undefined));
  });

  return {
    async next() {
      if (catchingUp) await withTimeout(catchingUp, CATCH_UP_WAIT_MS).catch(() => undefined);
      for (;;) {
        const number = Number(await NEXT.run(redis, 1, counter));
        if (number > 0) return number;
        await catchUp();
      }
    },
    async resolve(number) {
      const named = await redis.get(botNumberKey(prefix, number));
      if (named) return named;
      const stored = await Bot.findOne({ number }, { _id: 1, status: 1 }).lean();
      if (!stored) return null;
      const id = String(stored._id);
      if (isTerminal(stored.status)) await redis.set(botNumberKey(prefix, number), id, 'PX', ENDED_NAME_MS);
      else await redis.set(botNumberKey(prefix, number), id);
      return id;
    },
    catchUp,
  };
}
