import { simHostKeys } from '../src/platforms/sim/sim.platform';
import { meetings, sleep, startTestFleet, TestFleet, waitFor } from './support/fleet';

/** Runtime platform controls (PATCH /api/platforms/:name, admin key): a lowered limit and draining. */
jest.setTimeout(180_000);

const ADMIN = 'admin-key-controls-0123456789';
let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim', SIM_BOT_LIMIT: '5', ADMIN_API_KEY: ADMIN });
});
afterAll(() => t.close());

const patch = (body: unknown, auth = ADMIN, name = 'sim') =>
  t.request('PATCH', `/api/platforms/${name}`, { auth, body });
const createBots = async (count: number, durationMs: number) => {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    ids.push(
      (
        await t.request('POST', '/api/bots', {
          body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': String(durationMs) } },
        })
      ).body.id,
    );
  }
  return ids;
};
const allEnded = (ids: string[]) =>
  waitFor(
    async () => {
      const bots = await Promise.all(ids.map(async (id) => (await t.request('GET', `/api/bots/${id}`)).body));
      return bots.every((b) => b.status === 'ENDED' || b.status === 'FATAL') ? bots : null;
    },
    'the bots to end',
    120_000,
  );

it('refuses callers without the admin key, unknown platforms and limits above the configured one', async () => {
  expect((await patch({ limit: 2 }, t.apiKey)).status).toBe(401);
  expect((await patch({ limit: 2 }, 'not-the-admin-key-0123456789')).status).toBe(401);
  expect((await patch({ limit: 2 }, ADMIN, 'k8s')).status).toBe(404);
  const above = await patch({ limit: 6 });
  expect(above.status).toBe(400);
  expect(above.body.error.details[0].path).toBe('limit');
  expect((await patch({})).status).toBe(400);
  expect((await t.request('GET', '/api/platforms')).body.platforms[0]).toMatchObject({ limit: 5, draining: false });
});

it('a limit lowered from 5 to 2 under load: nobody is stopped, and no bot is placed until fewer than 2 occupy it', async () => {
  const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim');
  const ids = await createBots(12, 8000); // the first five still in call when the limit is lowered
  await waitFor(async () => (await t.fleet.redis.hlen(keys.containers)) === 5, 'five bots on the platform');
  const lowered = await patch({ limit: 2 });
  expect(lowered.status).toBe(200);
  expect(lowered.body).toMatchObject({ name: 'sim', limit: 2 });
  const [seconds, micros] = await t.fleet.redis.time();
  const loweredAt = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);

  const bots = await allEnded(ids);
  expect(bots.map((b) => `${b.status}/${b.endReason}`)).toEqual(Array(12).fill('ENDED/COMPLETED'));
  // The sim host's own clock of every container's life: how many lived when each new one started.
  const created = await t.fleet.redis.hgetall(keys.createdAt);
  const stopped = await t.fleet.redis.hgetall(keys.stoppedAt);
  const lives = ids
    .map((id) => `mb-${id}-sim`)
    .map((name) => ({ from: Number(created[name]), to: Number(stopped[name]) }));
  const aliveAt = (ms: number) => lives.filter((life) => life.from < ms && life.to > ms).length;
  expect(Math.max(...lives.map((life) => aliveAt(life.from) + 1))).toBeLessThanOrEqual(5);
  const placedAfter = lives.filter((life) => life.from > loweredAt);
  expect(placedAfter.length).toBeGreaterThanOrEqual(7);
  expect(Math.max(...placedAfter.map((life) => aliveAt(life.from)))).toBeLessThanOrEqual(1);
});

it('draining stops new placements until it is lifted; restoring the limit takes it back to the configured one', async () => {
  const drained = await patch({ draining: true, limit: null });
  expect(drained.body).toMatchObject({ limit: 5, draining: true });
  const ids = await createBots(2, 500);
  await sleep(3000); // three dispatcher ticks
  for (const id of ids) expect((await t.request('GET', `/api/bots/${id}`)).body.status).toBe('QUEUED');
  expect((await patch({ draining: false })).body).toMatchObject({ limit: 5, draining: false });
  expect((await allEnded(ids)).map((b) => b.endReason)).toEqual(['COMPLETED', 'COMPLETED']);
});
