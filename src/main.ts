import path from 'node:path';
import { Config, ConfigError, loadConfig } from './config';
import { RedisTarget } from './connections';
import { startFleet } from './fleet';
import { withKeptBotTokenSecret } from './kept-secret';
import { labelProcess } from './metrics';
import { createLogger, logger, setLogger } from './logger';
import { isPortOpen, startFerretDb, startRedis, StartedPeer } from './peers';
import { createShutdown, installSignalHandlers } from './shutdown';

/**
 * `node dist/src/main.js [all|api|worker]`. With no REDIS_URL (nor REDIS_SENTINELS) / MONGODB_URI it uses a
 * Redis and a MongoDB already listening on their default local ports, or starts redis-server and FerretDB
 * itself (data under .data/), and says which it used.
 */
type Role = 'all' | 'api' | 'worker';

async function resolvePeers(config: Config, dataDir: string) {
  const started: StartedPeer[] = [];
  // Through Sentinel the primary is wherever the sentinels say; REDIS_URL then only lends its credentials.
  let redis: RedisTarget | undefined = config.redisSentinel ?? config.redisUrl;
  if (config.redisSentinel) {
    const { name, sentinels } = config.redisSentinel;
    logger.info(`using Redis primary "${name}" through Sentinel`, {
      sentinels: sentinels.map(({ host, port }) => `${host}:${port}`).join(','),
    });
  }
  if (!redis) {
    if (await isPortOpen(6379)) {
      redis = 'redis://127.0.0.1:6379';
      logger.info('using Redis found on 127.0.0.1:6379');
    } else {
      const peer = await startRedis(path.join(dataDir, 'redis'), 6379, true);
      started.push(peer);
      redis = peer.url;
      logger.info(`using ${peer.description}`);
    }
  }
  let mongodbUri = config.mongodbUri;
  if (!mongodbUri) {
    if (await isPortOpen(27017)) {
      mongodbUri = 'mongodb://127.0.0.1:27017/meeboter';
      logger.info('using MongoDB found on 127.0.0.1:27017');
    } else {
      const peer = await startFerretDb(path.join(dataDir, 'ferretdb'), 27017);
      started.push(peer);
      mongodbUri = peer.url;
      logger.info(`using ${peer.description}`);
    }
  }
  return { redis, mongodbUri, started };
}

async function main(): Promise<void> {
  const role = (process.argv[2] ?? 'all') as Role;
  if (!['all', 'api', 'worker'].includes(role))
    throw new ConfigError(`role: expected all, api or worker, got "${role}"`);
  const dataDir = path.resolve('.data');
  const config = loadConfig(role === 'all' ? withKeptBotTokenSecret(process.env, dataDir) : process.env);
  setLogger(createLogger({ level: config.logLevel }, { role }));
  labelProcess({ role });
  for (const warning of config.warnings) logger.warn(`configuration warning: ${warning}`);
  if (role !== 'all' && config.botTokenSecretGenerated) {
    throw new ConfigError('BOT_TOKEN_SECRET: required when the API and workers run as separate processes');
  }
  const { redis, mongodbUri, started } = await resolvePeers(config, dataDir);
  const shutdown = createShutdown();
  for (const peer of started) shutdown.add('peer', () => peer.stop());
  installSignalHandlers(shutdown, config.shutdownTimeoutMs);
  const fleet = await startFleet(
    config,
    { redis, mongodbUri },
    { api: role !== 'worker', workers: role !== 'api' },
    shutdown,
  );
  logger.info('meeboter started', {
    role,
    node: process.version,
    port: fleet.port ?? null,
    platforms: config.platforms.map((p) => `${p.name}(${p.limit})`).join(','),
  });
}

main().catch((error) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`configuration error: ${error.message}\n`);
  } else {
    process.stderr.write(`startup failed: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  process.exit(1);
});
