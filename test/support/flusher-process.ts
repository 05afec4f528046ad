import { createMongo, createRedis } from '../../src/connections';
import { BotRecord, createFlusher } from '../../src/store/flusher';

/**
 * A flusher in a process of its own (`node dist/test/support/flusher-process.js`), for the test that kills
 * one with SIGKILL mid-batch. Env: REDIS_URL, MONGODB_URI, PREFIX, LEASE_MS. Prints "flusher started".
 */
async function main() {
  const env = process.env as Record<string, string>;
  const redis = createRedis(env.REDIS_URL, 'worker', 'flusher');
  const connection = await createMongo(env.MONGODB_URI);
  const flusher = createFlusher({
    redis,
    prefix: env.PREFIX,
    bots: connection.db!.collection<BotRecord>('bots'),
    events: connection.db!.collection('bot_events'),
    leaseMs: Number(env.LEASE_MS),
  });
  const stop = async () => {
    await flusher.close();
    await Promise.all([redis.quit(), connection.close()]);
    process.exit(0);
  };
  process.once('SIGTERM', () => {
    stop().catch(fail);
  });
  process.stdout.write('flusher started\n');
}

function fail(error: unknown) {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
}

main().catch(fail);
