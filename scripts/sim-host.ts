/**
 * A sim host process: runs the sim bots of the fleets whose workers use SIM_RUNNER=sim-host, on the
 * simulated host SIM_HOST (default REDIS_PREFIX, default "meeboter") and the sim platforms SIM_PLATFORMS
 * (default "sim"), until SIGTERM. SIM_HOST_RUN_BOTS=false starts containers without running their bots.
 */
import { Redis } from 'ioredis';
import { runSimHost } from '../src/platforms/sim/sim.platform';

async function main() {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const host = process.env.SIM_HOST ?? process.env.REDIS_PREFIX ?? 'meeboter';
  const platforms = (process.env.SIM_PLATFORMS ?? 'sim')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const subscribers = platforms.map(() => new Redis(url, { maxRetriesPerRequest: null }));
  const runBots = process.env.SIM_HOST_RUN_BOTS !== 'false';
  const hosts = await Promise.all(
    platforms.map((name, i) => runSimHost(redis, subscribers[i], host, name, { runBots })),
  );
  process.stdout.write(JSON.stringify({ msg: 'sim host running', host, platforms }) + '\n');
  const closeAll = async () => {
    await Promise.all(hosts.map((simHost) => simHost.close()));
    await Promise.all([redis, ...subscribers].map((connection) => connection.quit()));
    process.exit(0);
  };
  const stop = () => {
    closeAll().catch((error) => {
      process.stderr.write(`sim host failed to stop: ${String(error)}\n`);
      process.exit(1);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error) => {
  process.stderr.write(`sim host failed: ${String(error)}\n`);
  process.exit(1);
});
