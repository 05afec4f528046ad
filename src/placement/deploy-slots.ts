import { Redis } from 'ioredis';

/**
 * DEPLOYMENT_QUEUE_MAX_CONCURRENT across all platforms and processes (PRODUCT.md I5): a counting semaphore
 * in one Redis sorted set whose members are leases. A lease expires on its own, so a worker killed in the
 * middle of a deploy frees its slot after `leaseMs` instead of holding it forever.
 */
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0`;

export interface DeploySlots {
  /** Waits for a slot; resolves with a release function. */
  acquire(holder: string, signal?: AbortSignal): Promise<() => Promise<void>>;
  inUse(): Promise<number>;
}

export function createDeploySlots(redis: Redis, prefix: string, max: number, leaseMs = 5 * 60_000): DeploySlots {
  const key = `${prefix}:deploy-slots`;
  const tryAcquire = async (holder: string) => {
    const now = Date.now();
    const got = await redis.eval(ACQUIRE, 1, key, holder, now, now + leaseMs, max);
    return got === 1;
  };
  return {
    async acquire(holder, signal) {
      let delay = 10;
      while (!(await tryAcquire(holder))) {
        if (signal?.aborted) throw new Error('aborted while waiting for a deploy slot');
        await new Promise((resolve) => setTimeout(resolve, delay + Math.random() * delay));
        delay = Math.min(delay * 2, 250);
      }
      return async () => {
        await redis.zrem(key, holder);
      };
    },
    inUse: () => redis.zcard(key),
  };
}
