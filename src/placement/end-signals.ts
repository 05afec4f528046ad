import { Redis } from 'ioredis';
import { logger } from '../logger';

/**
 * How a process holding a bot on a platform learns that the bot has ended, wherever that happened.
 * Redis pub/sub makes it prompt; because pub/sub drops messages while a subscriber is away, each process also
 * asks the database about the bots it holds every `pollMs`, so a lost message only delays the release.
 */
export const endedChannel = (prefix: string) => `${prefix}:bot-ended`;

/** Announces that a bot ended; any process may call it, it needs no subscriber. */
export async function publishEnded(publisher: Redis, prefix: string, botId: string): Promise<void> {
  await publisher.publish(endedChannel(prefix), botId);
}

export interface EndSignals {
  /** Resolves once the bot is terminal, or when `signal` aborts. */
  waitForEnd(botId: string, signal: AbortSignal): Promise<'ended' | 'aborted'>;
  close(): Promise<void>;
}

export interface EndSignalOptions {
  /** A connection this module may put into subscriber mode; it is closed by close(). */
  subscriber: Redis;
  prefix: string;
  /** Returns the ids among `botIds` whose bots are terminal (or gone). */
  findEnded(botIds: string[]): Promise<string[]>;
  pollMs?: number;
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

  const poll = async () => {
    const ids = [...waiters.keys()];
    for (let i = 0; i < ids.length; i += 500) {
      for (const botId of await options.findEnded(ids.slice(i, i + 500))) wake(botId);
    }
  };
  const timer = setInterval(() => {
    poll().catch((error) => logger.warn('end-signal poll failed', { error: String(error) }));
  }, options.pollMs ?? 5000);
  timer.unref();

  return {
    waitForEnd(botId, signal) {
      return new Promise((resolve) => {
        if (signal.aborted) return resolve('aborted');
        const done = () => {
          signal.removeEventListener('abort', onAbort);
          resolve('ended');
        };
        const onAbort = () => {
          waiters.get(botId)?.delete(done);
          resolve('aborted');
        };
        signal.addEventListener('abort', onAbort, { once: true });
        if (!waiters.has(botId)) waiters.set(botId, new Set());
        waiters.get(botId)!.add(done);
        // The bot may have ended before we subscribed to its end.
        options
          .findEnded([botId])
          .then((ended) => ended.length && wake(botId))
          .catch(() => undefined);
      });
    },
    async close() {
      clearInterval(timer);
      await options.subscriber.quit().catch(() => undefined);
    },
  };
}
