import IORedis, { Redis, RedisOptions } from 'ioredis';
import mongoose, { Connection } from 'mongoose';
import { SentinelTarget } from './config';
import { logger } from './logger';
import { withRetries, withTimeout } from './retry';

/**
 * The one factory for Redis and MongoDB connections. Whoever calls a `create…` here owns the connection
 * and closes it.
 *
 * Workers (blocking BullMQ commands) need `maxRetriesPerRequest: null` so a Redis blip pauses them instead of
 * failing jobs; producers (the API) fail fast so an HTTP request gets an error instead of hanging.
 */
export type RedisRole = 'worker' | 'producer' | 'subscriber';

/**
 * Where Redis is, decided once at startup (src/main.ts) and handed to every connection: a URL (REDIS_URL), or
 * the sentinels that name the current primary (REDIS_SENTINELS, REDIS_SENTINEL_NAME).
 */
export type RedisTarget = string | SentinelTarget;

/** ioredis's options, with a retry strategy that always retries (the type BullMQ's connection option asks for). */
export type RedisConnectionOptions = Omit<RedisOptions, 'retryStrategy'> & {
  retryStrategy: (attempt: number) => number;
  url?: string;
};

/**
 * The options of one connection to `target`, for `createRedis` and for the connections BullMQ's workers make
 * themselves (a `url` key is BullMQ's, which passes it to ioredis as the first argument).
 *
 * Through Sentinel every (re)connection asks a sentinel for the primary and checks the server's role before
 * it is used, so a client follows a failover by reconnecting. A client can still be on a server that became a
 * replica while it stayed connected (an old primary that came back and was turned into a replica): its
 * writes answer READONLY, and `reconnectOnError` reconnects, which finds the primary, and sends the command
 * again (a write Redis refused with READONLY was not made: a script stops at its first write).
 */
export function redisOptions(target: RedisTarget, role: RedisRole, name: string = role): RedisConnectionOptions {
  const options: RedisConnectionOptions = {
    connectionName: `meeboter:${name}`,
    maxRetriesPerRequest: role === 'producer' ? 1 : null,
    enableOfflineQueue: role !== 'producer',
    retryStrategy: (attempt) => Math.min(200 * attempt, 2000),
    reconnectOnError: (error) => (error.message.startsWith('READONLY') ? 2 : false),
  };
  if (typeof target === 'string') return { url: target, ...options };
  return {
    ...options,
    sentinels: target.sentinels,
    name: target.name,
    role: 'master',
    username: target.username,
    password: target.password,
    db: target.db,
    sentinelRetryStrategy: (attempt) => Math.min(200 * attempt, 2000),
  };
}

export function createRedis(target: RedisTarget, role: RedisRole, name: string = role): Redis {
  const { url, ...options } = redisOptions(target, role, name);
  const client = url ? new IORedis(url, options) : new IORedis(options);
  client.on('error', (error) => logger.warn('redis connection error', { role: name, error: String(error) }));
  return client;
}

/**
 * How far before a lost connection writes may have been lost with it: an append-only file fsynced every second
 * loses about the last second; a replica promoted in a failover, what it lagged behind. A minute of what
 * MongoDB holds is cheap to compare with what Redis came back with.
 */
export const LAST_WRITES_MS = 60_000;

/**
 * Runs a check against MongoDB after a reconnection (`onReconnected`) until it succeeds, as a failover may come
 * with a MongoDB outage: each try bounded (a stopped MongoDB keeps its connections open and never answers),
 * tried again with backoff for about three minutes in all, then given up (the caller warns).
 */
export function checkAfterReconnect<T>(check: () => Promise<T>): Promise<T> {
  return withRetries(() => withTimeout(check(), 30_000), {
    attempts: 30,
    baseMs: 500,
    maxMs: 10_000,
    isRetryable: () => true,
  });
}

/**
 * Calls `listener` each time `redis` is ready again after it lost its connection, with when it lost it and
 * whether it found the same server (by its `run_id`) as before: only a server that restarted or replaced the
 * one before (a failover) may have lost its last writes (restarted from an append-only file fsynced every
 * second, or promoted while it lagged behind), and what depends on them is checked against MongoDB then.
 */
export function onReconnected(redis: Redis, listener: (lostAt: number, sameServer: Promise<boolean>) => void): void {
  let lostAt: number | undefined;
  let runId: Promise<string | undefined> = Promise.resolve(undefined);
  const serverRunId = () =>
    redis
      .info('server')
      .then((text) => /^run_id:(\w+)/m.exec(text)?.[1])
      .catch(() => undefined);
  if (redis.status === 'ready') runId = serverRunId();
  redis.on('close', () => (lostAt ??= Date.now()));
  redis.on('ready', () => {
    const before = runId;
    runId = serverRunId();
    if (lostAt === undefined) return;
    const at = lostAt;
    lostAt = undefined;
    const sameServer = Promise.all([before, runId]).then(([was, is]) => was !== undefined && was === is);
    listener(at, sameServer);
  });
}

/**
 * Whether a command failed for want of a Redis that can take it now, so that it may succeed once one can:
 * this process had no connection (Redis down, or failing over) and, as a producer, did not wait for one; or
 * the server refused it for its state: a primary without enough replicas in reach (`min-replicas-to-write`),
 * one still loading its data, a replica (a client still on an old primary). ioredis marks the first kind only
 * by their messages and, for the retry limit, the error's name.
 */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    error.message === "Stream isn't writeable and enableOfflineQueue options is false" ||
    error.message === 'Connection is closed.' ||
    /^(NOREPLICAS|LOADING|MASTERDOWN|READONLY) /.test(error.message)
  );
}

/** Opens a dedicated mongoose connection (never the global default) so tests and roles can hold several. */
export async function createMongo(uri: string): Promise<Connection> {
  const connection = mongoose.createConnection(uri, {
    serverSelectionTimeoutMS: 5000,
    // Indexes are created once at startup (createModels), not by mongoose on first use of each model.
    autoIndex: false,
    autoCreate: false,
  });
  connection.on('error', (error) => logger.warn('mongodb connection error', { error: String(error) }));
  await connection.asPromise();
  return connection;
}
