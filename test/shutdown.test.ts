import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startRedis } from '../src/peers';
import { baseEnv, cleanup, peerUrls, spawnFleetProcess, testDatabaseUri, uniqueName, waitFor } from './support/fleet';

/** SIGTERM ends a worker within SHUTDOWN_TIMEOUT_MS even when its Redis has gone away. */
jest.setTimeout(120_000);

it('a worker whose Redis has gone exits after SIGTERM, naming what did not close', async () => {
  const redis = await startRedis(mkdtempSync(path.join(os.tmpdir(), 'meeboter-gone-redis-')));
  const env = await baseEnv({
    REDIS_URL: redis.url,
    MONGODB_URI: testDatabaseUri(peerUrls().mongodbUri, uniqueName('meeboter_test_shutdown')),
    SHUTDOWN_TIMEOUT_MS: '3000',
    LOG_LEVEL: 'info',
  });
  const worker = spawnFleetProcess('worker', env);
  try {
    await waitFor(() => worker.output().includes('workers started'), 'the worker to start');
    await redis.stop();
    const exited = new Promise<number | null>((resolve) => worker.child.once('exit', resolve));
    worker.child.kill('SIGTERM');
    let code: number | null | undefined;
    void exited.then((value) => (code = value));
    await waitFor(() => code !== undefined, 'the worker to exit', 60_000);
    expect(code).toBe(1);
    expect(worker.output()).toContain('shutdown deadline passed');
  } finally {
    // A failed run leaves neither process for the next test file.
    if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
    await redis.stop();
    await cleanup({ redisUrl: peerUrls().redisUrl, mongodbUri: env.MONGODB_URI }, env.REDIS_PREFIX);
  }
});
