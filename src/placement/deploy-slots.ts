import { Redis } from 'ioredis';
import { RedisScript } from '../redis-script';

/**
 * DEPLOYMENT_QUEUE_MAX_CONCURRENT across all platforms and processes (docs/invariants.md, deploy
 * concurrency): a counting semaphore in one Redis sorted set whose members are leases. A lease expires on
 * its own, so a worker killed in the middle of a deploy frees its slot after `leaseMs` instead of holding it
 * forever.
 */
const ACQUIRE = new RedisScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0`);

export interface DeploySlots {
  /** Waits for a slot; resolves with a release function. */
  acquire(holder: string, signal?: AbortSignal): Promise<() => Promise<void>>;
  inUse(): Promise<number>;
}

interface Waiter {
  holder: string;
  signal?: AbortSignal;
  resolve(release: () => Promise<void>): void;
  reject(error: Error): void;
}

/**
 * This process's waiters queue up here, and only the oldest asks Redis (after a growing pause, or at once
 * when a slot of this process is freed); the next one asks as soon as it is served. So a process asks
 * Redis about once per pause however many of its bots wait: with every waiter polling, hundreds of held
 * bots waiting for 4 slots cost the worker and Redis thousands of calls a second.
 */
export function createDeploySlots(redis: Redis, prefix: string, max: number, leaseMs = 5 * 60_000): DeploySlots {
  const key = `${prefix}:deploy-slots`;
  const queue: Waiter[] = [];
  let pumping = false;
  let wake: (() => void) | undefined;

  const tryAcquire = async (holder: string) => {
    const now = Date.now();
    const got = await ACQUIRE.run(redis, 1, key, holder, now, now + leaseMs, max);
    return got === 1;
  };
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
      wake = done;
    });
  const releaseOf = (holder: string) => async () => {
    await redis.zrem(key, holder);
    wake?.();
  };

  const pump = async () => {
    pumping = true;
    let delay = 10;
    try {
      while (queue.length > 0) {
        const head = queue[0];
        if (head.signal?.aborted) {
          queue.shift();
          head.reject(new Error('aborted while waiting for a deploy slot'));
          continue;
        }
        let got: boolean;
        try {
          got = await tryAcquire(head.holder);
        } catch (error) {
          queue.shift();
          head.reject(error as Error);
          continue;
        }
        if (got) {
          queue.shift();
          head.resolve(releaseOf(head.holder));
          delay = 10;
          continue;
        }
        await pause(delay + Math.random() * delay);
        delay = Math.min(delay * 2, 250);
      }
    } finally {
      pumping = false;
    }
  };

  return {
    acquire(holder, signal) {
      return new Promise((resolve, reject) => {
        queue.push({ holder, signal, resolve, reject });
        // an aborted waiter leaves at once, wherever it is in the line
        signal?.addEventListener(
          'abort',
          () => {
            const index = queue.findIndex((waiter) => waiter.holder === holder && waiter.signal === signal);
            if (index > 0) queue.splice(index, 1)[0].reject(new Error('aborted while waiting for a deploy slot'));
            else if (index === 0) wake?.();
          },
          { once: true },
        );
        if (!pumping) void pump();
      });
    },
    inUse: () => redis.zcard(key),
  };
}
