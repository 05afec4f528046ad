/**
 * `npm run apikey -- create <owner> | list | revoke <id>`:
 * - create: makes an API key for <owner> and prints it, once, as the last line;
 * - list: one line per key: its id (the first 12 hex digits of its SHA-256), owner and creation time;
 * - revoke: deletes the key with that id (or a unique prefix of it); every process refuses it within 30 s. It
 *   marks the key revoked in the fleet's Redis first, so that no process shares it for an outage of MongoDB.
 * Uses MONGODB_URI, or the MongoDB that `npm start` uses by default (127.0.0.1:27017 or its own FerretDB); and
 * to revoke, REDIS_URL (or REDIS_SENTINELS), or the Redis `npm start` uses by default (127.0.0.1:6379) if one runs.
 */
import path from 'node:path';
import { Redis } from 'ioredis';
import { Config, loadConfig } from '../src/config';
import { createMongo, createRedis } from '../src/connections';
import { isPortOpen, startFerretDb } from '../src/peers';
import { withTimeout } from '../src/retry';
import { ApiKeys, createApiKeys } from '../src/services/api-keys.service';
import { createModels } from '../src/store/models';

const USAGE = 'usage: npm run apikey -- create <owner> | list | revoke <id>\n';

const COMMANDS: Record<string, (keys: ApiKeys, argument?: string) => Promise<number>> = {
  async create(keys, owner) {
    const key = await keys.create(owner!);
    process.stdout.write(`API key for ${owner} (shown once, store it now):\n${key}\n`);
    return 0;
  },
  async list(keys) {
    for (const key of await keys.list())
      process.stdout.write(`${key.id}  ${key.owner}  ${key.createdAt.toISOString()}\n`);
    return 0;
  },
  async revoke(keys, id) {
    const revoked = await keys.revoke(id!);
    if (!revoked) {
      process.stderr.write(`no single API key has an id starting with "${id}" (see npm run apikey -- list)\n`);
      return 1;
    }
    process.stdout.write(`revoked ${revoked.id} (owner ${revoked.owner})\n`);
    return 0;
  },
};

function parse(argv: string[]): { command: string; argument?: string } | null {
  const [command, argument] = argv;
  if (command === 'create' && argument && /^[\w.@-]{1,100}$/.test(argument)) return { command, argument };
  if (command === 'list' && argument === undefined) return { command };
  if (command === 'revoke' && argument) return { command, argument };
  return null;
}

/** How long a revoke waits for the fleet's Redis before it fails (nothing revoked). */
const REDIS_WAIT_MS = 5_000;

/** The fleet's Redis, answering; none when none is configured and none runs where `npm start` puts it. */
async function fleetRedis(config: Config): Promise<Redis | undefined> {
  const target =
    config.redisSentinel ?? config.redisUrl ?? ((await isPortOpen(6379)) ? 'redis://127.0.0.1:6379' : undefined);
  if (!target) return undefined;
  const redis = createRedis(target, 'worker', 'apikey');
  try {
    await withTimeout(redis.ping(), REDIS_WAIT_MS);
    return redis;
  } catch (error) {
    redis.disconnect();
    throw new Error(`Redis does not answer, nothing was revoked (${String(error)})`, { cause: error });
  }
}

async function main() {
  const parsed = parse(process.argv.slice(2));
  if (!parsed) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const config = loadConfig(process.env);
  // Before any MongoDB is started: a revoke that cannot reach Redis stops here, with nothing to clean up.
  const redis = parsed.command === 'revoke' ? await fleetRedis(config) : undefined;
  if (parsed.command === 'revoke' && !redis)
    process.stderr.write(
      'apikey: no Redis configured or running on 127.0.0.1:6379: the key is not marked revoked there, so a process that shares it may accept it while MongoDB does not answer (up to 24 h)\n',
    );
  let uri = config.mongodbUri;
  let stop = async () => {};
  if (!uri) {
    if (await isPortOpen(27017)) uri = 'mongodb://127.0.0.1:27017/meeboter';
    else {
      const peer = await startFerretDb(path.resolve('.data/ferretdb'));
      uri = peer.url;
      stop = peer.stop;
    }
  }
  const connection = await createMongo(uri);
  try {
    const keys = createApiKeys(await createModels(connection), redis && { redis, prefix: config.redisPrefix });
    process.exitCode = await COMMANDS[parsed.command](keys, parsed.argument);
  } finally {
    await redis?.quit();
    await connection.close();
    await stop();
  }
}

main().catch((error) => {
  process.stderr.write(`apikey failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
