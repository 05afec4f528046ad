import { Types } from 'mongoose';
import { occupyJobId } from '../queues/queue-names';
import { createLogger } from '../src/logger';
import { createRecovery } from '../src/placement/recovery';
import { storedBot } from './support/bot-docs';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * Recovery rebuilds Redis' view of the live bots from MongoDB at a cost that follows the live bots: here
 * 20,000 ended bots and 10 live ones whose Redis state is missing, and the bot documents read are those 10.
 */
let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim,sim-b' }, { api: true, workers: false });
});
afterAll(() => t.close());

const makeRecovery = (repo = t.fleet.repo) =>
  createRecovery({
    redis: t.fleet.redis,
    prefix: t.env.REDIS_PREFIX,
    repo,
    globalQueue: t.fleet.globalQueue,
    liveState: t.fleet.liveState,
    queues: t.fleet.queues,
    placement: t.fleet.placement,
    leaveGraceMs: 60_000,
    restoreQueues: () => Promise.resolve(),
    log: createLogger({ level: 'error' }),
  });

it('reads only the live bots Redis does not track, and puts each back where it was', async () => {
  const now = Date.now();
  const doc = (status: string, secondsAgo: number, extra: Record<string, unknown> = {}) =>
    storedBot({
      ownerId: 'recovery-owner',
      status,
      createdAt: new Date(now - secondsAgo * 1000),
      queuedAt: new Date(now - secondsAgo * 1000),
      statusVersion: 1,
      ...extra,
    });
  const ended = Array.from({ length: 20_000 }, () => doc('ENDED', 3600, { endReason: 'COMPLETED' }));
  for (let i = 0; i < ended.length; i += 2000) await t.fleet.models.Bot.collection.insertMany(ended.slice(i, i + 2000));

  // Created oldest first; the second one's deploy on `sim` failed earlier, so `sim` stays excluded for it.
  const queued = [50, 40, 30, 20, 10, 5].map((secondsAgo, index) =>
    doc(
      'QUEUED',
      secondsAgo,
      index === 1
        ? {
            attempts: [{ platform: 'sim', outcome: 'failed', reason: 'boom', at: new Date(now) }],
            excludedPlatforms: ['sim'],
          }
        : {},
    ),
  );
  const onPlatform = [
    doc('IN_CALL', 60, { platform: 'sim', platformIdentifier: 'x' }),
    doc('LEAVING', 60, { platform: 'sim-b', platformIdentifier: 'y', leaveRequestedAt: new Date(now) }),
  ];
  const scheduled = doc('SCHEDULED', 60, { joinAt: new Date(now + 3600_000), queuedAt: undefined });
  const endedButMarked = doc('ENDED', 60, { endReason: 'CANCELLED' });
  // Ended on its platform, but its container was not confirmed gone before Redis lost its data.
  const endedOnPlatform = doc('ENDED', 60, { endReason: 'COMPLETED', platform: 'sim', platformIdentifier: 'z' });
  const live = [...queued, ...onPlatform, scheduled, endedButMarked, endedOnPlatform];
  await t.fleet.models.Bot.collection.insertMany(live);
  for (const bot of live) await t.fleet.repo.markLive(String(bot._id), bot.createdAt);
  // One of them heartbeats again already: that holds no capacity, so it must still be held again.
  await t.fleet.redis.zadd(`${t.env.REDIS_PREFIX}:heartbeats`, now, String(onPlatform[0]._id));

  // A bot created through the API is in Redis already: it is not read, and nobody is placed before recovery.
  const created = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  expect(await t.fleet.placement.dispatch()).toEqual({ placed: 0, expired: 0, timedOut: 0 });

  const read: string[] = [];
  const recovery = makeRecovery({
    ...t.fleet.repo,
    findById: (id: string) => (read.push(id), t.fleet.repo.findById(id)),
  });

  expect(await recovery.recover(false)).toEqual({
    live: 12,
    read: 11,
    requeued: 6,
    reheld: 3,
    rescheduled: 1,
    dropped: 1,
  });
  expect(new Set(read)).toEqual(new Set(live.map((bot) => String(bot._id))));
  // Queued again at their original places, ahead of the bot created just now, with the old exclusion.
  expect(await t.fleet.globalQueue.head(0, 10)).toEqual([...queued.map((bot) => String(bot._id)), created.body.id]);
  expect(await t.fleet.globalQueue.excludedOf([String(queued[1]._id)])).toEqual([{ sim: 'failed' }]);
  // Held again on their platforms (the occupy job adopts the container, or stops what is left of an ended
  // one before its capacity counts as free), deadlines re-armed.
  expect(await t.fleet.queues.platforms.get('sim')!.getJobState(occupyJobId(String(endedOnPlatform._id), 'sim'))).toBe(
    'waiting',
  );
  for (const bot of onPlatform) {
    expect(
      await t.fleet.queues.platforms
        .get(bot.platform as string)!
        .getJobState(occupyJobId(String(bot._id), bot.platform as string)),
    ).toBe('waiting');
    expect(await t.fleet.liveState.lastHeartbeat(String(bot._id))).not.toBeNull();
  }
  expect(await t.fleet.queues.schedule.getJobState(String(scheduled._id))).toBe('delayed');
  expect((await t.fleet.repo.liveBots()).map((entry) => entry.id)).not.toContain(String(endedButMarked._id));

  // A second pass finds nothing missing and reads no bot document.
  read.length = 0;
  expect(await recovery.recover(false)).toEqual({
    live: 11,
    read: 0,
    requeued: 0,
    reheld: 0,
    rescheduled: 0,
    dropped: 0,
  });
  expect(read).toEqual([]);

  // When a fleet starts, the deadlines it finds count from then (its bots could not report while it was down).
  const inCall = String(onPlatform[0]._id);
  await t.fleet.redis.zadd(`${t.env.REDIS_PREFIX}:heartbeats`, now - 600_000, inCall);
  const beforeRestart = Date.now();
  await recovery.recover(true);
  expect((await t.fleet.liveState.lastHeartbeat(inCall))!.getTime()).toBeGreaterThanOrEqual(beforeRestart);

  // Rebuilt: the dispatcher places again, honouring the restored exclusion.
  expect((await t.fleet.placement.dispatch()).placed).toBe(7);
  expect(await t.fleet.queues.platforms.get('sim-b')!.getJobState(occupyJobId(String(queued[1]._id), 'sim-b'))).toBe(
    'waiting',
  );
});

it('runs one pass per interval across callers, and restarts deadlines only after the whole fleet was down', async () => {
  const interval = 2000;
  const recovery = makeRecovery();
  const botId = String(new Types.ObjectId());
  await t.fleet.repo.markLive(botId, new Date());
  const heartbeats = `${t.env.REDIS_PREFIX}:heartbeats`;
  const stale = Date.now() - 600_000;
  const lock = `${t.env.REDIS_PREFIX}:recovery:lock`;

  // No worker ran for a while: the first pass restarts the deadline it finds.
  await t.fleet.redis.zadd(heartbeats, stale, botId);
  expect(await recovery.runExclusive(interval)).not.toBeNull();
  expect(Number(await t.fleet.redis.zscore(heartbeats, botId))).toBeGreaterThan(stale);
  // Another caller within the interval does not run a pass.
  expect(await recovery.runExclusive(interval)).toBeNull();

  // Once the interval has passed, the next caller runs one; the fleet was running, so deadlines stay.
  await t.fleet.redis.zadd(heartbeats, stale, botId);
  await waitFor(async () => (await t.fleet.redis.pttl(lock)) < 0, 'the interval to pass', 10_000, 50);
  expect(await recovery.runExclusive(interval)).not.toBeNull();
  expect(Number(await t.fleet.redis.zscore(heartbeats, botId))).toBe(stale);
});

it('Redis losing its data during a pass leaves the fleet unrebuilt, so the next pass rebuilds everything', async () => {
  const wipe = async () => {
    const keys = await t.fleet.redis.keys(`${t.env.REDIS_PREFIX}:*`);
    if (keys.length) await t.fleet.redis.del(...keys);
  };
  const wipedMidPass = makeRecovery({ ...t.fleet.repo, liveBots: async () => (await wipe(), t.fleet.repo.liveBots()) });
  // A pass that started rebuilt, and one that was rebuilding: neither says rebuilt after the wipe.
  await makeRecovery().recover(false);
  expect(await t.fleet.globalQueue.isRebuilt()).toBe(true);
  await wipedMidPass.recover(false);
  expect(await t.fleet.globalQueue.isRebuilt()).toBe(false);
  expect((await t.fleet.placement.dispatch()).placed).toBe(0);
  await wipedMidPass.recover(false);
  expect(await t.fleet.globalQueue.isRebuilt()).toBe(false);
  // A pass Redis kept whole marks it.
  await makeRecovery().recover(false);
  expect(await t.fleet.globalQueue.isRebuilt()).toBe(true);
});
