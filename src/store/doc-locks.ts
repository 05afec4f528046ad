import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

/**
 * Per-document write locks in Redis. FerretDB v1 (our MongoDB-compatible test and embedded server) applies
 * an update as "read the document, change it, write the whole document back" without any lock, so two
 * concurrent updates of one bot lose each other's fields and a conditional update can pass twice (seen in
 * our 300-bot test). Every write to a bot document therefore runs under this lock; on a real MongoDB it
 * only costs two Redis round trips.
 */
export interface DocLocks {
  withLock<T>(id: string, fn: () => Promise<T>): Promise<T>;
}

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export function createDocLocks(redis: Redis, prefix: string, leaseMs = 10_000, waitMs = 30_000): DocLocks {
  return {
    async withLock(id, fn) {
      const key = `${prefix}:lock:bot:${id}`;
      const token = randomBytes(8).toString('hex');
      const deadline = Date.now() + waitMs;
      let delay = 2;
      while ((await redis.set(key, token, 'PX', leaseMs, 'NX')) !== 'OK') {
        if (Date.now() > deadline) throw new Error(`could not lock bot ${id} within ${waitMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, delay + Math.random() * delay));
        delay = Math.min(delay * 2, 50);
      }
      try {
        return await fn();
      } finally {
        await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
      }
    },
  };
}
