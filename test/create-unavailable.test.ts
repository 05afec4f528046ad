import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startRedis } from '../src/peers';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * A create is all or nothing: when Redis (which records the bot and queues it) cannot take it, the answer is
 * 503 and nothing of it is kept, in Redis or MongoDB.
 */
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

it('answers 503 with nothing written when Redis is gone', async () => {
  const first = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  expect(first.status).toBe(201); // (also warms the API key cache, so authentication needs no Redis)
  // the flusher writes the bot, its live-index entry and its first event
  await waitFor(
    async () => JSON.stringify(await stored()) === JSON.stringify({ bots: 1, live: 1, events: 1 }),
    'the first bot in MongoDB',
  );

  await redis.stop();
  const refused = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  expect(refused.status).toBe(503);
  expect(refused.body.error.code).toBe('UNAVAILABLE');
  expect(await stored()).toEqual({ bots: 1, live: 1, events: 1 });
});
