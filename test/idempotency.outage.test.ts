import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import { startFerretDb, startRedis, StartedPeer } from '../src/peers';
import { createBotChanges } from '../src/store/bot-changes';
import { idempotencyRecordId } from '../src/store/models';
import { meetings, startTestFleet, TestFleet, uniqueName, waitFor } from './support/fleet';

/**
 * Idempotency-Keys are settled in Redis, in the step that creates the bot, and kept in MongoDB by the
 * flusher: a create with a key works while MongoDB does not answer (its process stopped with SIGSTOP, so
 * connections hang rather than fail), like every other create, and a key MongoDB holds survives a wiped
 * Redis. Two fleets (each with its own connections, as two processes) share a Redis and a FerretDB of this
 * file's own, so that it can stop the one and wipe the other.
 */
let ferret: StartedPeer;
let redis: StartedPeer;
let a: TestFleet;
let b: TestFleet;
let stopped = false;
let shared: Record<string, string>;
const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-idempotency-outage-'));

beforeAll(async () => {
  ferret = await startFerretDb(path.join(dir, 'ferret'));
  // with its append-only file, so that it can restart with what it had (less what a test takes away)
  redis = await startRedis(path.join(dir, 'redis'), undefined, true);
  shared = { MONGODB_URI: ferret.url, REDIS_URL: redis.url, REDIS_PREFIX: uniqueName('idem'), __DB: 'idem_test' };
  a = await startTestFleet(shared);
  b = await startTestFleet(shared);
});
afterAll(async () => {
  if (stopped) process.kill(ferret.pid!, 'SIGCONT');
  await a?.close();
  await b?.close();
  await ferret?.stop();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const create = (t: TestFleet, key: string, body: Record<string, unknown>) =>
  t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, ...body }, headers: { 'idempotency-key': key } });

/** Once MongoDB holds the key's record and its bot (the flusher wrote them). */
const keptInMongo = (key: string, botId: string) =>
  waitFor(async () => {
    const record = await a.fleet.models.Idempotency.findById(idempotencyRecordId('owner-a', key)).lean();
    const bot = await a.fleet.models.Bot.findById(botId).lean();
    return record && bot ? record : null;
  }, `the key ${key} and its bot in MongoDB`);

it('answers 201 while MongoDB hangs, the same bot to retries during and after, 409 for another body', async () => {
  // the API keys are checked (and shared in Redis) while MongoDB answers
  for (const t of [a, b]) expect((await t.request('GET', '/api/bots/000000000000000000000000')).status).toBe(404);
  process.kill(ferret.pid!, 'SIGSTOP');
  stopped = true;

  const created = await create(a, 'outage-1', { displayName: 'Outage' });
  expect(created.status).toBe(201);
  const retried = await create(b, 'outage-1', { displayName: 'Outage' });
  expect(retried.status).toBe(200);
  expect(retried.body.id).toBe(created.body.id);
  const otherBody = await create(a, 'outage-1', { displayName: 'Other' });
  expect(otherBody.status).toBe(409);
  expect(otherBody.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');

  process.kill(ferret.pid!, 'SIGCONT');
  stopped = false;
  const after = await create(a, 'outage-1', { displayName: 'Outage' });
  expect(after.status).toBe(200);
  expect(after.body.id).toBe(created.body.id);
  const record = await keptInMongo('outage-1', created.body.id);
  expect(String(record.botId)).toBe(created.body.id);
  expect(await a.fleet.models.Bot.countDocuments({ displayName: 'Outage' })).toBe(1);
});

it('concurrent creates with one key on two fleets make exactly one bot', async () => {
  const body = { displayName: 'Concurrent' };
  const results = await Promise.all(
    Array.from({ length: 40 }, (_, i) => create(i % 2 === 0 ? a : b, 'both-fleets', body)),
  );
  expect(results.map((r) => r.status).sort()).toEqual([...Array(39).fill(200), 201]);
  expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
  await keptInMongo('both-fleets', results[0].body.id);
  expect(await a.fleet.models.Bot.countDocuments({ displayName: 'Concurrent' })).toBe(1);
});

it('a key MongoDB holds survives a wiped Redis: the retried create answers the same bot', async () => {
  const created = await create(a, 'wipe-1', { displayName: 'Wiped' });
  expect(created.status).toBe(201);
  await keptInMongo('wipe-1', created.body.id);

  await a.fleet.redis.flushall();

  const retried = await create(b, 'wipe-1', { displayName: 'Wiped' });
  expect(retried.status).toBe(200);
  expect(retried.body.id).toBe(created.body.id);
  expect((await create(a, 'wipe-1', { displayName: 'Other' })).status).toBe(409);
  // a key never used is still free
  const fresh = await create(a, 'wipe-2', { displayName: 'Wiped' });
  expect(fresh.status).toBe(201);
  await keptInMongo('wipe-2', fresh.body.id);
  expect(await a.fleet.models.Bot.countDocuments({ displayName: 'Wiped' })).toBe(2);
});

it('a Redis that lost only its last writes (the mark kept) gets back the keys MongoDB holds from just before the loss', async () => {
  const created = await create(a, 'lost-1', { displayName: 'Lost' });
  expect(created.status).toBe(201);
  await keptInMongo('lost-1', created.body.id);
  // As after a restart from an append-only file fsynced every second, or a failover to a replica that lagged:
  // the key's last write is gone, the restore mark (older) is not, and the server restarts.
  const admin = new IORedis(redis.url);
  await admin.del(`${shared.REDIS_PREFIX}:idempotency:${idempotencyRecordId('owner-a', 'lost-1')}`);
  expect(await admin.exists(`${shared.REDIS_PREFIX}:idempotency-restored`)).toBe(1);
  await admin.quit();
  await redis.stop();
  redis = await startRedis(path.join(dir, 'redis'), Number(new URL(redis.url).port), true);

  const retried = await waitFor(async () => {
    const answer = await create(b, 'lost-1', { displayName: 'Lost' });
    return answer.status < 500 ? answer : null;
  }, 'the retried create answered once the fleet reconnected');
  expect(retried.body.id).toBe(created.body.id);
  expect(retried.status).toBe(200);
  expect(await a.fleet.models.Bot.countDocuments({ displayName: 'Lost' })).toBe(1);
});

it('a key is kept for its window; once past it, the key makes a new bot, and MongoDB keeps the newer record', async () => {
  const recordId = idempotencyRecordId('owner-a', 'window-1');
  const key = `${a.env.REDIS_PREFIX}:idempotency:${recordId}`;
  const first = await create(a, 'window-1', { displayName: 'Window' });
  expect(first.status).toBe(201);
  const lifetime = await a.fleet.redis.pttl(key);
  expect(lifetime).toBeGreaterThan(23 * 3600 * 1000);
  expect(lifetime).toBeLessThanOrEqual(24 * 3600 * 1000);
  await keptInMongo('window-1', first.body.id);

  // the window passes
  await a.fleet.redis.pexpire(key, 1);
  await waitFor(async () => (await a.fleet.redis.exists(key)) === 0, 'the key to expire');
  const second = await create(b, 'window-1', { displayName: 'Window' });
  expect(second.status).toBe(201);
  expect(second.body.id).not.toBe(first.body.id);
  await waitFor(
    async () =>
      String((await a.fleet.models.Idempotency.findById(recordId).lean())?.botId) === second.body.id ? true : null,
    'MongoDB to keep the newer record',
  );
  // and a Redis rebuilt from MongoDB answers the newer bot
  await a.fleet.redis.flushall();
  const retried = await create(a, 'window-1', { displayName: 'Window' });
  expect(retried.status).toBe(200);
  expect(retried.body.id).toBe(second.body.id);
});

it('a process starting on a wiped Redis puts the keys MongoDB holds back before any create', async () => {
  const recordId = idempotencyRecordId('owner-a', 'wipe-1');
  await a.fleet.redis.flushall();
  const c = await startTestFleet(shared);
  try {
    const held = await c.fleet.redis.get(`${a.env.REDIS_PREFIX}:idempotency:${recordId}`);
    expect(JSON.parse(held!).botId).toBe(String((await a.fleet.models.Idempotency.findById(recordId))!.botId));
  } finally {
    await c.fleet.shutdown.close();
  }
});

/**
 * A create on a whose placement fails, with the flushers of a and b stopped: MongoDB gets nothing until the
 * create is undone, then the bot, its key's record and their removal, in order, from a flusher started later.
 */
async function undoneCreate(key: string, displayName: string) {
  await a.fleet.flusher.close();
  await b.fleet.flusher.close();
  // the placement queue's key of the wrong type: the bot and its key are taken, then its placement fails
  const placementQueue = `${shared.REDIS_PREFIX}:gq:order`;
  await a.fleet.redis.set(placementQueue, 'not a sorted set');
  const undone = await create(a, key, { displayName });
  await a.fleet.redis.del(placementQueue);
  expect(undone.status).toBe(503);
}

// Last: these stop the flushers of a and b.
it('a create undone while its key was not yet in MongoDB leaves no record of the key there', async () => {
  const recordId = idempotencyRecordId('owner-a', 'undone-1');
  await undoneCreate('undone-1', 'Undone');
  expect(await a.fleet.redis.exists(`${shared.REDIS_PREFIX}:idempotency:${recordId}`)).toBe(0);

  const c = await startTestFleet(shared);
  try {
    expect(await createBotChanges(c.fleet.redis, shared.REDIS_PREFIX).waitFlushed('now', 30_000)).toBe(true);
    expect(await c.fleet.models.Idempotency.findById(recordId).lean()).toBeNull();
    // so a Redis rebuilt from MongoDB does not hold the key either: another body makes a bot
    await c.fleet.redis.flushall();
    const reused = await create(c, 'undone-1', { displayName: 'Reused' });
    expect(reused.status).toBe(201);
  } finally {
    await c.fleet.shutdown.close();
  }
});

it('a create undone while the flushers were stopped leaves no bot, events or live mark in MongoDB', async () => {
  const recordId = idempotencyRecordId('owner-a', 'undone-2');
  await undoneCreate('undone-2', 'Undone later');
  // the 503 names no bot: its id is in its insert, still in its partition stream
  const streams = await a.fleet.redis.keys(`${shared.REDIS_PREFIX}:changes:*`);
  const entries = (await Promise.all(streams.map((stream) => a.fleet.redis.xrange(stream, '-', '+')))).flat();
  const inserts = entries.flatMap(([, fields]) => {
    const f = Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, i) => fields.slice(2 * i, 2 * i + 2)));
    return f.kind === 'insert' && JSON.parse(f.doc).displayName === 'Undone later' ? [f.bot as string] : [];
  });
  expect(inserts).toHaveLength(1);
  const [botId] = inserts;
  expect((await a.request('GET', `/api/bots/${botId}`)).status).toBe(404);

  // a flusher that comes later finds the create and its removal in one batch: it writes the key's record, then
  // deletes it (a removal in a later batch than its create: test/bot-repository.test.ts, test/flusher.test.ts)
  const c = await startTestFleet(shared);
  try {
    expect(await createBotChanges(c.fleet.redis, shared.REDIS_PREFIX).waitFlushed('now', 30_000)).toBe(true);
    const { Bot, BotEvent, LiveBot, Idempotency } = c.fleet.models;
    expect(await Bot.findById(botId).lean()).toBeNull();
    expect(await BotEvent.countDocuments({ botId })).toBe(0);
    expect(await LiveBot.findById(botId).lean()).toBeNull();
    expect(await Idempotency.findById(recordId).lean()).toBeNull();
    expect((await c.request('GET', `/api/bots/${botId}`)).status).toBe(404);
  } finally {
    await c.fleet.shutdown.close();
  }
});
