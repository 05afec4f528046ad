import { Redis } from 'ioredis';
import { Connection } from 'mongoose';
import { withTimeout } from './retry';
import { Flusher, FlusherStatus } from './store/flusher';

/**
 * Whether this process can serve, for /readyz and /metrics (and so for every probe and healthcheck).
 *
 * Ready means Redis answers: Redis holds every decision (queues, capacity, deadlines, the bots' live state),
 * so the API takes bots, heartbeats and reports and the workers place and stop bots with MongoDB away, while
 * the flusher keeps the changes in Redis and writes them once MongoDB is back. MongoDB's state and the
 * flusher's backlog are reported beside it, as degraded: taking a process out of service for them would
 * stop the running bots' heartbeats from reaching any API, and every bot would end HEARTBEAT_TIMEOUT.
 */
export interface Readiness {
  /** Redis answers: the process serves. */
  ready: boolean;
  /** Ready, but MongoDB does not answer or this process's flusher cannot write to it (changes pile up). */
  degraded: boolean;
  checks: {
    redis: string;
    mongodb: string;
    /** `ok`, `lagging: <why>` while MongoDB refuses this process's writes, or `unknown` without Redis. */
    flusher: string;
  };
  /** Bot changes not in MongoDB yet, across the fleet; null while Redis does not answer. */
  unflushedChanges: number | null;
}

export interface ReadinessSources {
  redis: Pick<Redis, 'ping'>;
  mongo: Connection;
  flusher: Pick<Flusher, 'status'>;
}

/** A peer that does not answer within this long counts as unavailable (probes time out after 3 s). */
const CHECK_TIMEOUT_MS = 1000;

export async function checkReadiness({ redis, mongo, flusher }: ReadinessSources): Promise<Readiness> {
  const check = async (probe: () => Promise<unknown>) => {
    try {
      await withTimeout(probe(), CHECK_TIMEOUT_MS);
      return 'ok';
    } catch (error) {
      return `unavailable: ${error instanceof Error ? error.message : String(error)}`;
    }
  };
  let status: FlusherStatus | undefined;
  const [redisCheck, mongodb] = await Promise.all([
    check(() => redis.ping()),
    check(() => mongo.db!.admin().ping()),
    check(async () => (status = await flusher.status())),
  ]);
  // the backlog is read from Redis: without it, none is known (not zero)
  const flush = redisCheck === 'ok' ? status : undefined;
  const lagging = flush?.partitions.find((partition) => partition.held && partition.lastError);
  const flusherCheck = !flush ? 'unknown: Redis does not answer' : lagging ? `lagging: ${lagging.lastError}` : 'ok';
  const ready = redisCheck === 'ok';
  return {
    ready,
    degraded: ready && (mongodb !== 'ok' || flusherCheck !== 'ok'),
    checks: { redis: redisCheck, mongodb, flusher: flusherCheck },
    unflushedChanges: flush ? flush.partitions.reduce((sum, partition) => sum + partition.backlog, 0) : null,
  };
}
