import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { logger } from '../logger';
import { RedisScript } from '../redis-script';

/**
 * DEPLOYMENT_QUEUE_MAX_CONCURRENT across all platforms and processes (docs/invariants.md): a counting semaphore in one Redis
 * sorted set whose members are leases, each scored by when it lapses (on Redis' clock, so the hosts' clocks
 * do not matter). Every process renews the leases it holds every third of `leaseMs` for as long as their
 * deploys run, however long that is (a Coolify deploy follows its deployment for up to
 * COOLIFY_START_TIMEOUT_MS); a process that died renews nothing, and its slots lapse within `leaseMs`.
 *
 * A renewal that finds one of its leases gone (Redis lost its data, or this process could not reach Redis
 * for a whole lease and the slot lapsed) puts it back, even above the cap, and logs a warning. The deploy
 * call under way cannot be taken back; counting it keeps the count true, so no new deploy starts until
 * the deploys really running are under the cap again. A lease released while a renewal was under way, which
 * that renewal may have put back (sent again after NOSCRIPT), is removed once it returns. Each lease is a member of its own, so a second run
 * of the same bot's deploy (its job adopted after a stall) never shares or frees the first one's slot.
 */
const NOW_MS = `local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)`;

/** KEYS: the set. ARGV: member, lease ms, cap. 1 when the member took a slot. */
const ACQUIRE = new RedisScript(`${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0`);

/** KEYS: the set. ARGV: lease ms, then members. Extends every lease; answers the members that were gone. */
const RENEW = new RedisScript(`${NOW_MS}
local lost = {}
for i = 2, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then table.insert(lost, ARGV[i]) end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
return lost`);

/** KEYS: the set. Leases not lapsed. */
const IN_USE = new RedisScript(`${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])`);

/** One deploy's place under the cap. */
export interface DeploySlot {
  /** Gives the slot back. Idempotent. */
  release(): Promise<void>;
  /**
   * Runs `wait` without the slot: it is given back for the wait and taken again after it, in line with
   * every other deploy. Rejects, holding nothing, when `wait` does, or when the job is aborted meanwhile.
   */
  outside: <T>(wait: () => Promise<T>) => Promise<T>;
}

export interface DeploySlots {
  /** Waits for a slot for `holder` (a name for logs); rejects when `signal` aborts first. */
  acquire(holder: string, signal?: AbortSignal): Promise<DeploySlot>;
  inUse(): Promise<number>;
}

interface Waiter {
  member: string;
  signal?: AbortSignal;
  resolve(): void;
  reject(error: Error): void;
}

/**
 * This process's waiters queue up here, and only the oldest asks Redis (after a growing pause, or at once
 * when a slot of this process is freed); the next one asks as soon as it is served. So a process asks
 * Redis about once per pause however many of its bots wait: with every waiter polling, hundreds of held
 * bots waiting for 4 slots cost the worker and Redis thousands of calls a second.
 */
export function createDeploySlots(redis: Redis, prefix: string, max: number, leaseMs: number): DeploySlots {
  const key = `${prefix}:deploy-slots`;
  const queue: Waiter[] = [];
  /** Members this process holds, renewed together by one timer while there are any. */
  const held = new Set<string>();
  let renewal: NodeJS.Timeout | undefined;
  let pumping = false;
  let wake: (() => void) | undefined;

  const renew = async () => {
    if (held.size === 0) {
      clearInterval(renewal);
      renewal = undefined;
      return;
    }
    const renewing = [...held];
    try {
      const lost = (await RENEW.run(redis, 1, key, leaseMs, ...renewing)) as string[];
      // A slot released while the renewal was under way (a NOSCRIPT answer has it sent twice, and a release
      // can land in between) was put back by it: it goes again, or it would occupy the cap for a lease.
      const released = renewing.filter((member) => !held.has(member));
      if (released.length > 0) await redis.zrem(key, ...released);
      for (const member of lost.filter((member) => held.has(member))) {
        logger.warn(
          'a deploy slot lapsed while its deploy still ran; it counts again, above the cap until deploys end',
          { holder: member },
        );
      }
    } catch (error) {
      logger.warn('deploy slot renewal failed; trying again', { error: String(error) });
    }
  };
  const hold = (member: string) => {
    held.add(member);
    renewal ??= setInterval(() => void renew(), Math.max(1, Math.floor(leaseMs / 3))).unref();
  };
  const drop = async (member: string) => {
    if (!held.delete(member)) return;
    await redis.zrem(key, member);
    wake?.();
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
          got = (await ACQUIRE.run(redis, 1, key, head.member, leaseMs, max)) === 1;
        } catch (error) {
          queue.shift();
          head.reject(error as Error);
          continue;
        }
        if (got) {
          queue.shift();
          hold(head.member);
          head.resolve();
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

  /** Waits in line for a lease under `member`. */
  const take = (member: string, signal?: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      // an aborted waiter leaves at once, wherever it is in the line
      const onAbort = () => {
        const index = queue.findIndex((waiter) => waiter.member === member);
        if (index > 0) queue.splice(index, 1)[0].reject(new Error('aborted while waiting for a deploy slot'));
        else if (index === 0) wake?.();
      };
      // and stops listening once it left the line: the signal is the process's, shared by every job
      const leave = () => signal?.removeEventListener('abort', onAbort);
      queue.push({
        member,
        signal,
        resolve: () => (leave(), resolve()),
        reject: (error) => (leave(), reject(error)),
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      if (!pumping) void pump();
    });

  const memberOf = (holder: string) => `${holder}#${randomBytes(6).toString('hex')}`;

  return {
    async acquire(holder, signal) {
      let member = memberOf(holder);
      await take(member, signal);
      return {
        release: () => drop(member),
        async outside(wait) {
          await drop(member);
          const result = await wait();
          member = memberOf(holder);
          await take(member, signal);
          return result;
        },
      };
    },
    inUse: async () => Number(await IN_USE.run(redis, 1, key)),
  };
}
