import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';

/**
 * A Lua script sent by its SHA-1 (EVALSHA), so its text crosses the wire once per Redis server instead of
 * on every call: with EVAL, writing script text was the API process's largest single cost under load. A
 * server that does not know the script (restarted, flushed, failed over) answers NOSCRIPT, and the call is
 * made again with the text, which loads it.
 */
export class RedisScript {
  readonly sha: string;

  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, numberOfKeys: number, ...keysAndArgs: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, numberOfKeys, ...keysAndArgs);
    } catch (error) {
      if (!String((error as Error).message).startsWith('NOSCRIPT')) throw error;
      return redis.eval(this.lua, numberOfKeys, ...keysAndArgs);
    }
  }
}

/** Deletes a lock's key only for the holder whose token it still holds. */
export const RELEASE_LOCK = new RedisScript(
  `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
);

/** Extends a lock's lease (ARGV[2] ms) only for the holder whose token it still holds; 0 when it is not theirs. */
export const RENEW_LOCK = new RedisScript(
  `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`,
);
