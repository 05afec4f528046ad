import { Redis } from 'ioredis';
import { createRedis } from '../../src/connections';
import { cleanup, peerUrls, testDatabaseUri, uniqueName } from './fleet';

/**
 * Connections to the run's Redis under a key prefix of their own, for tests of one Redis-only part;
 * `close()` quits them all and drops every key under the prefix.
 */
export function redisOnly(label: string) {
  const prefix = uniqueName(label);
  const connections: Redis[] = [];
  return {
    prefix,
    connections,
    connect: () => {
      const redis = createRedis(peerUrls().redisUrl, 'worker', 'test');
      connections.push(redis);
      return redis;
    },
    async close() {
      await Promise.all(connections.map((redis) => redis.quit()));
      // no database of its own: cleanup drops one that was never made
      await cleanup(
        { ...peerUrls(), mongodbUri: testDatabaseUri(peerUrls().mongodbUri, uniqueName(`${label}_db`)) },
        prefix,
      );
    },
  };
}
