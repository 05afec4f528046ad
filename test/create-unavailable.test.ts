import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startRedis } from '../src/peers';
import { meetings, startTestFleet, TestFleet } from './support/fleet';

/** A create is all or nothing: when the queue cannot take the bot, the answer is 503 and MongoDB keeps nothing of it. */
jest.setTimeout(60_000);
let t: TestFleet;
let redis: Awaited<ReturnType<typeof startRedis>>;
beforeAll(async () => {
  redis = await startRedis(mkdtempSync(path.join(os.tmpdir(), 'meeboter-create-redis-')));
  t = await startTestFleet({ REDIS_URL: redis.url }, { api: true, workers: false });
});
afterAll(async () => {
  // Redis back on its port, so the fleet closes and cleans up as usual
  const port = Number(new URL(redis.url).port);
  redis = await startRedis(mkdtempSync(path.join(os.tmpdir(), 'meeboter-create-redis-')), port);
  await t.close();
  await redis.stop();
});

const stored = async () => ({
  bots: await t.fleet.models.Bot.countDocuments({}),
  live: await t.fleet.models.LiveBot.countDocuments({}),
  events: await t.fleet.models.BotEvent.countDocuments({}),
});

it('answers 503 with nothing written when Redis is gone between the insert and the queue', async () => {
  const first = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  expect(first.status).toBe(201); // (also warms the API key cache, so authentication needs no Redis)
  expect(await stored()).toEqual({ bots: 1, live: 1, events: 1 });

  await redis.stop();
  const refused = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  expect(refused.status).toBe(503);
  expect(refused.body.error.code).toBe('UNAVAILABLE');
  expect(await stored()).toEqual({ bots: 1, live: 1, events: 1 });
});
