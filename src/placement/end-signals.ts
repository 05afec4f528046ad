import { Redis } from 'ioredis';
import { logger } from '../logger';
import { KeyChange } from '../store/bot-changes';
import { endedSet } from '../store/live-state';

/**
 * How a process holding a bot on a platform learns that the bot has ended, wherever that happened.
 * Redis pub/sub makes it prompt. Pub/sub drops messages while a subscriber is away, so ended bots are also
 * kept for a day in a sorted set that each process checks for the bots it holds every `pollMs` (one
 * ZMSCORE per 1,000 bots), and, rarely, the database is asked directly, for an end whose announcement never
 * happened. That last check reads at most `databaseBatch` bots per `databasePollMs`, taking the held bots in
 * turn, so its load on the database stays fixed however many bots a process holds.
 */
export const endedChannel = (prefix: string) => `${prefix}:bot-ended`;
const KEEP_ENDED_MS = 24 * 3600 * 1000;

/**
 * The announcement that a bot ended, as key changes: the lifecycle makes them in the same Redis step as the
 * end itself, so an accepted end is announced even if its process dies right after.
 */
export function endedSignal(prefix: string, botId: string, nowMs = Date.now()): KeyChange[] {
  return [
    { op: 'zadd', key: endedSet(prefix), score: nowMs, member: botId },
    { op: 'ztrim', key: endedSet(prefix), score: nowMs - KEEP_ENDED_MS },
    { op: 'publish', key: endedChannel(prefix), member: botId },
  ];
}

export interface EndSignals {
  /**
   * Resolves once the bot is terminal, when `signal` aborts, or after `timeoutMs`. The timeout is a plain
   * timer, never `AbortSignal.any([signal, AbortSignal.timeout(ms)])`: Node 20 holds a timeout signal inside
   * a composite weakly, so after a garbage collection it never fires and the wait lasts until the bot ends.
   */
  waitForEnd(botId: string, signal: AbortSignal, timeoutMs?: number): Promise<'ended' | 'aborted' | 'timed-out'>;
  /** Which of these bots ended in the last day, as announced (one ZMSCORE per 1,000 bots). */
  endedAmong(botIds: string[]): Promise<string[]>;
  close(): Promise<void>;
}

export interface EndSignalOptions {
  /** For reading the ended set. */
  redis: Redis;
  /** A connection this module may put into subscriber mode; it is closed by close(). */
  subscriber: Redis;
  prefix: string;
  /** Asks the database: is this bot terminal (or gone)? */
  hasEnded(botId: string): Promise<boolean>;
  pollMs?: number;
  databasePollMs?: number;
  databaseBatch?: number;
}

export async function createEndSignals(options: EndSignalOptions): Promise<EndSignals> {
  const channel = endedChannel(options.prefix);
  const waiters = new Map<string, Set<() => void>>();
  const wake = (botId: string) => {
    const set = waiters.get(botId);
    if (!set) return;
    waiters.delete(botId);
    for (const resolve of set) resolve();
  };

  await options.subscriber.subscribe(channel);
  options.subscriber.on('message', (_channel, botId) => wake(botId));

  const endedInRedis = async (ids: string[]) => {
    const ended: string[] = [];
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000);
      const scores = await options.redis.zmscore(endedSet(options.prefix), ...chunk);
      chunk.forEach((id, index) => scores[index] !== null && ended.push(id));
    }
    return ended;
  };
  const pollRedis = async () => {
    const ids = [...waiters.keys()];
    if (ids.length) for (const botId of await endedInRedis(ids)) wake(botId);
  };
  let databaseTurn = 0;
  const pollDatabase = async () => {
    const ids = [...waiters.keys()];
    const batch = Math.min(ids.length, options.databaseBatch ?? 200);
    for (let i = 0; i < batch; i++) {
      const botId = ids[(databaseTurn + i) % ids.length];
      if (waiters.has(botId) && (await options.hasEnded(botId))) wake(botId);
    }
    databaseTurn = ids.length ? (databaseTurn + batch) % ids.length : 0;
  };
  // Each poll is scheduled after the previous one finished: a slow database must not pile polls up.
  let closed = false;
  const timers = new Set<NodeJS.Timeout>();
  const every = (ms: number, poll: () => Promise<void>) => {
    const next = () => {
      if (closed) return;
      const timer = setTimeout(() => {
        timers.delete(timer);
        poll()
          .catch((error) => logger.warn('end-signal poll failed', { error: String(error) }))
          .finally(next);
      }, ms);
      timer.unref();
      timers.add(timer);
    };
    next();
  };
  every(options.pollMs ?? 2000, pollRedis);
  every(options.databasePollMs ?? 60_000, pollDatabase);

  return {
    endedAmong: endedInRedis,
    waitForEnd(botId, signal, timeoutMs) {
      return new Promise((resolve) => {
        if (signal.aborted) return resolve('aborted');
        const settle = (outcome: 'ended' | 'aborted' | 'timed-out') => {
          waiters.get(botId)?.delete(done);
          if (waiters.get(botId)?.size === 0) waiters.delete(botId);
          signal.removeEventListener('abort', onAbort);
          clearTimeout(timer);
          resolve(outcome);
        };
        const done = () => settle('ended');
        const onAbort = () => settle('aborted');
        const timer =
          timeoutMs === undefined
            ? undefined
            : setTimeout(() => settle('timed-out'), Math.max(1, Math.round(timeoutMs)));
        signal.addEventListener('abort', onAbort, { once: true });
        if (!waiters.has(botId)) waiters.set(botId, new Set());
        waiters.get(botId)!.add(done);
        // The bot may have ended before we subscribed to its end.
        endedInRedis([botId])
          .then((ended) => ended.length && wake(botId))
          .catch(() => undefined);
      });
    },
    async close() {
      closed = true;
      timers.forEach(clearTimeout);
      await options.subscriber.quit().catch(() => undefined);
    },
  };
}
