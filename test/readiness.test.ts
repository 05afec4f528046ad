import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ephemeralRangeStart, startRedis, StartedPeer } from '../src/peers';
import { startTestFleet, TestFleet, waitFor } from './support/fleet';

/** readyz follows Redis: unready while it is down, ready again once it is back. Uses a Redis of its own. */
let redis: StartedPeer;
let t: TestFleet;
const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-readyz-'));

beforeAll(async () => {
  redis = await startRedis(dir);
  t = await startTestFleet({ REDIS_URL: redis.url }, { api: true, workers: false });
});
afterAll(async () => {
  await t.close();
  await redis.stop();
});

it('goes unready when Redis stops and ready when it returns', async () => {
  expect((await t.request('GET', '/readyz', { auth: null })).status).toBe(200);
  const port = Number(new URL(redis.url).port);
  // Redis comes back on this port below; one from the ephemeral range could meanwhile be the local end of a
  // client's connection (its own reconnects included), and Redis would then fail to listen.
  expect(port).toBeLessThan(ephemeralRangeStart());
  await redis.stop();
  const down = await waitFor(async () => {
    const res = await t.request('GET', '/readyz', { auth: null });
    return res.status === 503 ? res : null;
  }, 'readyz to report 503');
  expect(down.body).toMatchObject({ ready: false, degraded: false, unflushedChanges: null });
  expect(down.body.checks.redis).toMatch(/^unavailable/);
  expect(down.body.checks.mongodb).toBe('ok');
  // healthz stays up: the process is alive, it just cannot serve
  expect((await t.request('GET', '/healthz', { auth: null })).status).toBe(200);

  redis = await startRedis(dir, port);
  await waitFor(async () => (await t.request('GET', '/readyz', { auth: null })).status === 200, 'readyz to recover');
});
