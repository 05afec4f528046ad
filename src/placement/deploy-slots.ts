import { Redis } from 'ioredis';
import { RedisScript } from '../redis-script';

/**
 * DEPLOYMENT_QUEUE_MAX_CONCURRENT across all platforms and processes (PRODUCT.md I5): a counting semaphore
 * in one Redis sorted set whose members are leases. A lease expires on its own, so a worker killed in the
 * middle of a deploy frees its slot after `leaseMs` instead of holding it forever.
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

export function createDeploySlots(redis: Redis, prefix: string, max: number, leaseMs = 5 * 60_000): DeploySlots {
  const key = `${prefix}:deploy-slots`;
  const tryAcquire = async (holder: string) => {
    const now = Date.now();
    const got = await ACQUIRE.run(redis, 1, key, holder, now, now + leaseMs, max);
    return got === 1;
  };
  // This process's waiters, oldest first. A slot this process frees wakes the oldest at once; slots freed
  // by other processes (or by an expired lease) are found by each waiter's next try, after a growing pause.
  const waiters: Array<() => void> = [];
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        const index = waiters.indexOf(wake);
        if (index >= 0) waiters.splice(index, 1);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      waiters.push(wake);
    });
  return {
    async acquire(holder, signal) {
      let delay = 10;
      while (!(await tryAcquire(holder))) {
        if (signal?.aborted) throw new Error('aborted while waiting for a deploy slot');
        await pause(delay + Math.random() * delay);
        delay = Math.min(delay * 2, 250);
      }
      return async () => {
        await redis.zrem(key, holder);
        waiters[0]?.();
      };
    },
    inUse: () => redis.zcard(key),
  };
}
