import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFerretDb, StartedPeer } from '../src/peers';
import { expectStoredAsShown, meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * MongoDB away for a while (its process gone, connections refused): Redis keeps deciding, so bots are still
 * created and placed and the API answers with their live state; readiness stays ready and says MongoDB is
 * away and the flusher lags; once MongoDB is back the flusher catches up and MongoDB holds every bot as the
 * API shows it, with its whole status history. Uses a FerretDB of its own. (A MongoDB that hangs instead of
 * refusing, for longer than the readiness probe's window: test/mongo-hang.test.ts.)
 */
let ferret: StartedPeer;
let t: TestFleet;
const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-mongo-outage-'));

beforeAll(async () => {
  ferret = await startFerretDb(dir);
  t = await startTestFleet({ MONGODB_URI: ferret.url });
});
afterAll(async () => {
  await t.close();
  await ferret.stop();
});

const readyz = () => t.request('GET', '/readyz', { auth: null });
const statusOf = async (id: string) => (await t.request('GET', `/api/bots/${id}`)).body.status as string;

it('creates and places bots while MongoDB is down, and MongoDB holds all of it once it is back', async () => {
  // The API key is looked up in MongoDB once and then cached; this request does that while it is up.
  const first = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  expect(first.status).toBe(201);
  await waitFor(async () => (await statusOf(first.body.id)) === 'IN_CALL', 'the first bot in call');

  const port = Number(new URL(ferret.url).port);
  await ferret.stop();
  const created = await Promise.all(
    Array.from({ length: 5 }, () => t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } })),
  );
  expect(created.map((res) => res.status)).toEqual([201, 201, 201, 201, 201]);
  const ids = created.map((res) => res.body.id as string);
  // placement goes on: each is deployed and reports its way into the call
  for (const id of ids)
    await waitFor(async () => (await statusOf(id)) === 'IN_CALL', `bot ${id} in call without MongoDB`);
  // a bot that ends meanwhile ends for good
  expect((await t.request('POST', `/api/bots/${first.body.id}/leave`)).status).toBe(200);
  await waitFor(async () => ['ENDED', 'FATAL'].includes(await statusOf(first.body.id)), 'the first bot to end');

  const down = await waitFor(async () => {
    const res = await readyz();
    return String(res.body.checks.flusher).startsWith('lagging') ? res : null;
  }, 'readyz to report MongoDB away and the flusher lagging');
  // still ready: the fleet serves without MongoDB
  expect([down.status, down.body.ready, down.body.degraded]).toEqual([200, true, true]);
  expect(down.body.checks.redis).toBe('ok');
  expect(down.body.checks.mongodb).toMatch(/^unavailable/);
  expect(down.body.unflushedChanges).toBeGreaterThan(0);

  ferret = await startFerretDb(dir, port);
  const up = await waitFor(
    async () => {
      const res = await readyz();
      return res.status === 200 &&
        !res.body.degraded &&
        res.body.checks.flusher === 'ok' &&
        res.body.unflushedChanges === 0
        ? res
        : null;
    },
    'the flusher to catch up',
    120_000,
  );
  expect(up.body.checks).toEqual({ redis: 'ok', mongodb: 'ok', flusher: 'ok' });

  await expectStoredAsShown(t, [first.body.id as string, ...ids]);
  // the ended bot left the live index, the others are in it
  const live = (await t.fleet.repo.liveBots()).map((entry) => entry.id);
  expect(live.sort()).toEqual([...ids].sort());
});

it('creates a bot with an Idempotency-Key while MongoDB is down, and answers the retry with that bot once MongoDB is back', async () => {
  // The key is taken in Redis with its bot, as every create is decided (the chaos run found a 500 here when the
  // key's record had to reach MongoDB first).
  const create = () =>
    t.request('POST', '/api/bots', { body: { meeting: meetings.zoom }, headers: { 'idempotency-key': 'outage-1' } });
  const port = Number(new URL(ferret.url).port);
  await ferret.stop();

  const created = await create();
  expect(created.status).toBe(201);
  const retriedDuring = await create();
  expect(retriedDuring.body.id).toBe(created.body.id);

  ferret = await startFerretDb(dir, port);
  const retriedAfter = await create();
  expect(retriedAfter.status).toBeLessThan(300);
  expect(retriedAfter.body.id).toBe(created.body.id);
});
