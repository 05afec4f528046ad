/**
 * `npm run chaos -- --minutes N --seed S [--platforms local,...]`: starts the fleet split in roles with its
 * peers, puts a load of bots through it while faults drawn from the seed break its processes and peers, and
 * checks the invariants from the peers' own truth (RELIABILITY.md). Exits 1 on any violation.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ALL_PLATFORMS } from './chaos/peers/registry';
import { runChaos, RunOptions } from './chaos/run';
import { summary } from './chaos/record';

async function main() {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '3' },
      seed: { type: 'string' },
      platforms: { type: 'string', default: ALL_PLATFORMS.join(',') },
      redis: { type: 'string', default: 'single' },
      network: { type: 'string', default: 'toxiproxy' },
    },
  });
  const minutes = Number(values.minutes);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  const redis = values.redis as RunOptions['redis'];
  const network = values.network as RunOptions['network'];
  if (
    !(minutes > 0) ||
    !Number.isInteger(seed) ||
    seed < 0 ||
    !['single', 'sentinel'].includes(redis) ||
    !['toxiproxy', 'direct'].includes(network)
  ) {
    process.stderr.write(
      `usage: npm run chaos -- --minutes N --seed S [--platforms ${ALL_PLATFORMS.join(',')}] [--redis single|sentinel] [--network toxiproxy|direct]\n`,
    );
    process.exit(2);
  }
  const platforms = values.platforms
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  // First, so that whatever happens next, the run can be replayed.
  process.stdout.write(
    `chaos seed ${seed} (replay: npm run chaos -- --minutes ${minutes} --seed ${seed} --platforms ${platforms.join(',')} --redis ${redis} --network ${network})\n`,
  );
  const { record, file } = await runChaos({
    minutes,
    seed,
    platforms,
    redis,
    network,
    resultsDir: path.resolve(__dirname, '../../reliability/results'),
  });
  process.stdout.write(summary(record, file) + '\n');
  process.exit(record.violations === 0 ? 0 : 1);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `chaos run failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
