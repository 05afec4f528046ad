import { botKey, createBotChanges } from '../src/store/bot-changes';
import { storedBot } from './support/bot-docs';
import { meetings, startTestFleet, TestFleet } from './support/fleet';

/** The repository over Redis (decides) and MongoDB (records), on the real peers of the run. */
let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim' }, { api: true, workers: false });
});
afterAll(() => t.close());

const create = async () =>
  (await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } })).body.id as string;
const cancel = { kind: 'move', to: 'ENDED', source: 'client', reason: 'CANCELLED' } as const;
/** The bot as MongoDB holds it, once MongoDB holds every change made so far. */
const stored = async (id: string) => {
  expect(await createBotChanges(t.fleet.redis, t.env.REDIS_PREFIX).waitFlushed('now', 30_000)).toBe(true);
  return t.fleet.models.Bot.findById(id).lean<Record<string, unknown>>();
};
const statusEvents = async (id: string) =>
  (await t.fleet.repo.events(id, 100)).filter((e) => e.type === 'status').map((e) => e.status);

it('a list made right after creates holds every one of them (it waits for MongoDB to have them)', async () => {
  const owner = `owner-list-${Date.now()}`;
  const key = await t.fleet.apiKeys.create(owner);
  const created = await Promise.all(
    Array.from(
      { length: 30 },
      async () =>
        (await t.request('POST', '/api/bots', { auth: key, body: { meeting: meetings.zoom } })).body.id as string,
    ),
  );
  const listed = (await t.request('GET', '/api/bots?limit=100', { auth: key })).body.data.map(
    (bot: { id: string }) => bot.id,
  );
  expect([...listed].sort()).toEqual([...created].sort());
});

it("a bot Redis lost is read from MongoDB, and its next change builds on MongoDB's version", async () => {
  const id = await create();
  expect(await statusEvents(id)).toEqual(['QUEUED']);
  expect((await stored(id))!.changeVersion).toBe(1);
  await t.fleet.redis.del(botKey(t.env.REDIS_PREFIX, id));

  expect((await t.fleet.repo.findById(id))!.status).toBe('QUEUED');
  const outcome = await t.fleet.repo.transition(id, cancel);
  expect(outcome!.bot.status).toBe('ENDED');
  expect(await statusEvents(id)).toEqual(['QUEUED', 'ENDED']);
  expect(await stored(id)).toMatchObject({ status: 'ENDED', endReason: 'CANCELLED', changeVersion: 2 });
});

it('a record written before versions were kept (no changeVersion) takes the next change', async () => {
  const record = storedBot({ displayName: 'old', queuedAt: new Date(), statusChangedAt: new Date() });
  const id = record._id;
  await t.fleet.models.Bot.collection.insertOne(record);
  await t.fleet.repo.transition(String(id), cancel);
  expect(await statusEvents(String(id))).toEqual(['ENDED']);
  // it counted as version 1, so the change is version 2
  expect(await stored(String(id))).toMatchObject({ status: 'ENDED', changeVersion: 2, displayName: 'old' });
  // and it cannot be created again over it
  const again = t.fleet.repo.insert({ ...(await t.fleet.repo.findById(String(id)))!, status: 'QUEUED' });
  await expect(again).rejects.toMatchObject({ code: 11000 });
});

it('Redis keeps a live bot, and an ended one for 24 h', async () => {
  const id = await create();
  const key = botKey(t.env.REDIS_PREFIX, id);
  expect(await t.fleet.redis.pttl(key)).toBe(-1);
  await t.fleet.repo.transition(id, cancel);
  const ttl = await t.fleet.redis.pttl(key);
  expect(ttl).toBeGreaterThan(23 * 3600 * 1000);
  expect(ttl).toBeLessThanOrEqual(24 * 3600 * 1000);
});

it('an undone create leaves nothing behind: not the bot, its events, its live mark, nor the name its number gives it', async () => {
  const created = (await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } })).body as {
    id: string;
    number: number;
  };
  const numberKey = `${t.env.REDIS_PREFIX}:bot-number:${created.number}`;
  expect(await t.fleet.redis.get(numberKey)).toBe(created.id);
  // MongoDB holds it already: its removal, after it in its stream, deletes it there
  expect(await stored(created.id)).not.toBeNull();
  expect(await t.fleet.models.LiveBot.findById(created.id).lean()).not.toBeNull();
  await t.fleet.repo.remove(created.id);
  expect(await t.fleet.redis.exists(botKey(t.env.REDIS_PREFIX, created.id), numberKey)).toBe(0);
  // remove() waited for the flusher to write the removal: a read right after finds nothing
  expect((await t.request('GET', `/api/bots/${created.id}`)).status).toBe(404);
  expect(await t.fleet.models.Bot.findById(created.id).lean()).toBeNull();
  expect(await t.fleet.models.BotEvent.countDocuments({ botId: created.id })).toBe(0);
  expect(await t.fleet.models.LiveBot.findById(created.id).lean()).toBeNull();
});

// Last: it stops this fleet's flusher.
it('a list waits a bounded time for MongoDB, then answers from what MongoDB has, with the live state over it; a history has the changes MongoDB lacks', async () => {
  const owner = `owner-stale-${Date.now()}`;
  const key = await t.fleet.apiKeys.create(owner);
  const createFor = async () =>
    (await t.request('POST', '/api/bots', { auth: key, body: { meeting: meetings.zoom } })).body.id as string;
  const flushed = await createFor();
  expect((await t.request('GET', '/api/bots', { auth: key })).body.data.map((bot: { id: string }) => bot.id)).toEqual([
    flushed,
  ]);

  await t.fleet.flusher.close();
  const unflushed = await createFor();
  expect((await t.request('DELETE', `/api/bots/${flushed}`, { auth: key })).status).toBe(200);
  const listed = (await t.request('GET', '/api/bots', { auth: key })).body.data;
  // the new bot is not in MongoDB yet; the one MongoDB has shows its live status
  expect(listed.map((bot: { id: string; status: string }) => [bot.id, bot.status])).toEqual([[flushed, 'ENDED']]);
  expect((await t.request('GET', `/api/bots/${unflushed}`, { auth: key })).body.status).toBe('QUEUED');

  // Histories read what the flusher has not written yet from its stream, beside what MongoDB holds.
  expect(await t.fleet.models.BotEvent.countDocuments({ botId: unflushed })).toBe(0);
  const history = async (id: string) =>
    (await t.request('GET', `/api/bots/${id}/events`, { auth: key })).body.data
      .filter((e: { type: string }) => e.type === 'status')
      .map((e: { status: string }) => e.status);
  expect(await history(unflushed)).toEqual(['QUEUED']);
  expect(await history(flushed)).toEqual(['QUEUED', 'ENDED']);
  expect(await statusEvents(flushed)).toEqual(['QUEUED', 'ENDED']);
});

// After the last test stopped the flusher: a removal it has not written yet.
it('an undone create MongoDB still holds (the flusher behind) is not read back, changed or put back into Redis', async () => {
  const record = storedBot({ queuedAt: new Date(), statusChangedAt: new Date(), changeVersion: 1 });
  const id = String(record._id);
  // as the flusher wrote its create and live mark before it fell behind
  await t.fleet.models.Bot.collection.insertOne(record);
  await t.fleet.models.LiveBot.collection.insertOne({ _id: record._id, createdAt: record.createdAt });
  await t.fleet.repo.remove(id);

  // What recovery reads (the live index, then the bot) and what a placement's claim writes find no bot.
  expect(await t.fleet.repo.findById(id)).toBeNull();
  expect(await t.fleet.repo.transition(id, cancel)).toBeNull();
  expect(await t.fleet.redis.exists(botKey(t.env.REDIS_PREFIX, id))).toBe(0);
  // MongoDB holds it until the flusher writes the removal
  expect(await t.fleet.models.Bot.findById(id).lean()).not.toBeNull();
});
