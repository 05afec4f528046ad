import IORedis, { Redis, RedisOptions } from 'ioredis';
import mongoose, { Connection } from 'mongoose';
import { logger } from './logger';

/**
 * The one factory for Redis and MongoDB connections. Whoever calls a `create…` here owns the connection
 * and closes it.
 *
 * Workers (blocking BullMQ commands) need `maxRetriesPerRequest: null` so a Redis blip pauses them instead of
 * failing jobs; producers (the API) fail fast so an HTTP request gets an error instead of hanging.
 */
export type RedisRole = 'worker' | 'producer' | 'subscriber';

export function createRedis(url: string, role: RedisRole, name: string = role): Redis {
  const options: RedisOptions = {
    connectionName: `meeboter:${name}`,
    maxRetriesPerRequest: role === 'producer' ? 1 : null,
    enableOfflineQueue: role !== 'producer',
    retryStrategy: (attempt) => Math.min(200 * attempt, 2000),
  };
  const client = new IORedis(url, options);
  client.on('error', (error) => logger.warn('redis connection error', { role: name, error: String(error) }));
  return client;
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
