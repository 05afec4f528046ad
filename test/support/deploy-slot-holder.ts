import { createRedis } from '../../src/connections';
import { createDeploySlots } from '../../src/placement/deploy-slots';

/**
 * A process holding one deploy slot (`node dist/test/support/deploy-slot-holder.js`), as a worker in the
 * middle of a long deploy, for the tests that kill or stop one. Env: REDIS_URL, PREFIX, CAP, LEASE_MS.
 * Prints "holding" once it has the slot; SIGTERM releases it and exits.
 */
async function main() {
  const env = process.env as Record<string, string>;
  const redis = createRedis(env.REDIS_URL, 'worker', 'slot-holder');
  const slots = createDeploySlots(redis, env.PREFIX, Number(env.CAP), Number(env.LEASE_MS));
  const slot = await slots.acquire('holder');
  const release = async () => {
    await slot.release();
    process.stdout.write('released\n');
    await redis.quit();
    process.exit(0);
  };
  process.once('SIGTERM', () => {
    release().catch(fail);
  });
  process.stdout.write('holding\n');
  setInterval(() => undefined, 60_000);
}

function fail(error: unknown) {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
}

main().catch(fail);
