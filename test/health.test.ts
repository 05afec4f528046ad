import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Types } from 'mongoose';
import { reconcilePlatform, sweepHeartbeats } from '../workers/sweeps';
import { deploymentName } from '../src/platforms/platform';
import { createSimPlatform, simHostKeys } from '../src/platforms/sim/sim.platform';
import { createLiveState } from '../src/store/live-state';
import { storedBot } from './support/bot-docs';
import { meetings, pidOf, spawnFleetProcess, startTestFleet, TestFleet, waitFor, sleep } from './support/fleet';

/**
 * Self-healing (docs/invariants.md, health): silent bots are FATAL and stopped, lost containers are noticed, bots asked
 * to leave are made to, scheduled bots wait for their time, and each sweep runs once per interval.
 */
jest.setTimeout(120_000);

const fleets: TestFleet[] = [];
afterEach(async () => {
  await Promise.all(fleets.splice(0).map((t) => t.close()));
});

async function localFleet(env: Record<string, string> = {}) {
  const t = await startTestFleet({
    PLATFORM_PRIORITY: 'local',
    LOCAL_RUN_DIR: mkdtempSync(path.join(os.tmpdir(), 'meeboter-health-')),
    HEARTBEAT_INTERVAL_MS: '200',
    HEARTBEAT_TIMEOUT_MS: '60000',
    SWEEP_INTERVAL_MS: '400',
    ...env,
  });
  fleets.push(t);
  return t;
}

const create = async (t: TestFleet, metadata: Record<string, string>, extra: Record<string, unknown> = {}) => {
  const res = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, metadata, ...extra } });
  expect(res.status).toBe(201);
  return res.body.id as string;
};
const get = async (t: TestFleet, id: string) => (await t.request('GET', `/api/bots/${id}`)).body;
const waitStatus = (t: TestFleet, id: string, statuses: string[]) =>
  waitFor(
    async () => {
      const bot = await get(t, id);
      return statuses.includes(bot.status) ? bot : null;
    },
    `bot ${id} to reach ${statuses.join('/')}`,
  );
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it('a hanging bot becomes FATAL HEARTBEAT_TIMEOUT and its process is stopped', async () => {
  const t = await localFleet({ HEARTBEAT_TIMEOUT_MS: '1500' });
  const id = await create(t, { 'sim.behavior': 'hang' });
  const inCall = await waitStatus(t, id, ['IN_CALL']);
  const pid = pidOf(inCall.platformIdentifier);
  expect(alive(pid)).toBe(true);
  const ended = await waitStatus(t, id, ['FATAL', 'ENDED']);
  expect(ended).toMatchObject({ status: 'FATAL', endReason: 'HEARTBEAT_TIMEOUT' });
  // not before its time: the last heartbeat is at least the timeout before the end
  const deadline = new Date(ended.lastHeartbeatAt).getTime() + 1500;
  expect(new Date(ended.endedAt).getTime()).toBeGreaterThanOrEqual(deadline);
  // and within one sweep interval of it: no heartbeat sweep that started after the deadline missed it (the
  // one that ended it may have started just before the deadline and read the due-set just after)
  // (the sweep's job is marked completed a moment after its status write, so wait for it)
  const heartbeatRuns = async () =>
    (await t.fleet.queues.sweeps.getJobs(['completed'], 0, -1)).filter((job) => job.name === 'heartbeat-expiry');
  const runs = await waitFor(async () => {
    const all = await heartbeatRuns();
    return all.some((job) => job.returnvalue?.acted) && all;
  }, 'the sweep run that ended the bot');
  const acting = runs.filter((job) => job.returnvalue?.acted);
  expect(acting.map((job) => job.returnvalue)).toEqual([{ read: 1, acted: 1 }]);
  const missed = runs.filter((job) => job.processedOn! >= deadline && job.processedOn! < acting[0].processedOn!);
  expect(missed.map((job) => job.returnvalue)).toEqual([]);
  await waitFor(() => !alive(pid), 'the bot process to be gone');
  await waitFor(async () => (await t.fleet.placement.stats()).platforms[0].active === 0, 'capacity to be freed');
});

it('a crashed bot is found by reconciliation: FATAL CONTAINER_LOST, capacity freed', async () => {
  const t = await localFleet();
  const id = await create(t, { 'sim.behavior': 'crash' });
  const ended = await waitStatus(t, id, ['FATAL', 'ENDED']);
  expect(ended).toMatchObject({ status: 'FATAL', endReason: 'CONTAINER_LOST' });
  await waitFor(async () => (await t.fleet.placement.stats()).platforms[0].active === 0, 'capacity to be freed');
});

it('a bot that ignores /leave is ENDED LEFT after the grace and its process stopped', async () => {
  const t = await localFleet({ LEAVE_GRACE_MS: '1000' });
  const id = await create(t, { 'sim.behavior': 'ignore-leave', 'sim.durationMs': '600000' });
  const inCall = await waitStatus(t, id, ['IN_CALL']);
  const leaving = await t.request('POST', `/api/bots/${id}/leave`);
  expect(leaving.body.status).toBe('LEAVING');
  const ended = await waitStatus(t, id, ['ENDED', 'FATAL']);
  expect(ended).toMatchObject({ status: 'ENDED', endReason: 'LEFT' });
  await waitFor(() => !alive(pidOf(inCall.platformIdentifier)), 'the bot process to be gone');
});

it('a bot that does leave when asked ends LEFT by itself', async () => {
  const t = await localFleet();
  const id = await create(t, { 'sim.durationMs': '600000' });
  await waitStatus(t, id, ['IN_CALL']);
  await t.request('POST', `/api/bots/${id}/leave`);
  const ended = await waitStatus(t, id, ['ENDED', 'FATAL']);
  expect(ended).toMatchObject({ status: 'ENDED', endReason: 'LEFT' });
  const sources = (await t.request('GET', `/api/bots/${id}/events`)).body.data
    .filter((e: { type: string; status: string }) => e.type === 'status' && e.status === 'ENDED')
    .map((e: { data: { source: string } }) => e.data.source);
  expect(sources).toEqual(['bot']);
});

it('a bot DEPLOYING longer than DEPLOY_TIMEOUT_MS becomes FATAL DEPLOY_TIMEOUT', async () => {
  const t = await startTestFleet({ PLATFORM_PRIORITY: 'sim', DEPLOY_TIMEOUT_MS: '800', SWEEP_INTERVAL_MS: '300' });
  fleets.push(t);
  await t.fleet.redis.set(`${t.env.REDIS_PREFIX}:sim:sim:fault`, 'delay:4000');
  const id = await create(t, {});
  const ended = await waitStatus(t, id, ['FATAL', 'ENDED']);
  expect(ended).toMatchObject({ status: 'FATAL', endReason: 'DEPLOY_TIMEOUT' });
  // the slow deploy still finishes; its container is then stopped because the bot has ended
  await waitFor(
    async () =>
      (await t.fleet.redis.hlen(`${t.env.REDIS_PREFIX}:sim:sim:containers`)) === 0 &&
      (await t.fleet.redis.hlen(`${t.env.REDIS_PREFIX}:sim:sim:deploys`)) === 1,
    'the late container to be stopped',
  );
});

it('a SCHEDULED bot is queued at its join time, not before', async () => {
  const t = await startTestFleet({ PLATFORM_PRIORITY: 'sim', SCHEDULE_LEAD_MS: '0' });
  fleets.push(t);
  const joinAt = new Date(Date.now() + 5000); // still ahead when the create's answer is checked, on a slow machine
  const id = await create(t, { 'sim.durationMs': '100' }, { joinAt: joinAt.toISOString() });
  expect((await get(t, id)).status).toBe('SCHEDULED');
  const ended = await waitStatus(t, id, ['ENDED']);
  expect(new Date(ended.deployedAt).getTime()).toBeGreaterThanOrEqual(joinAt.getTime());
  const statuses = (await t.request('GET', `/api/bots/${id}/events`)).body.data
    .filter((e: { type: string }) => e.type === 'status')
    .map((e: { status: string }) => e.status);
  expect(statuses.slice(0, 3)).toEqual(['SCHEDULED', 'QUEUED', 'DEPLOYING']);
});

it('with 2 worker processes each sweep runs once per interval', async () => {
  const t = await startTestFleet({ PLATFORM_PRIORITY: 'sim', SWEEP_INTERVAL_MS: '250' }, { api: true, workers: false });
  fleets.push(t);
  const workers = [
    spawnFleetProcess('worker', { ...t.env, PORT: '0' }),
    spawnFleetProcess('worker', { ...t.env, PORT: '0' }),
  ];
  try {
    const runs = (name: string) => t.fleet.redis.get(`${t.env.REDIS_PREFIX}:sweeps:${name}:runs`).then(Number);
    await waitFor(async () => (await runs('heartbeat-expiry')) > 0, 'the first sweep');
    const start = Date.now();
    const before = await Promise.all(
      ['heartbeat-expiry', 'deploy-timeout', 'leave-grace', 'webhook-wake', 'reconcile-sim'].map(runs),
    );
    await sleep(4000);
    const after = await Promise.all(
      ['heartbeat-expiry', 'deploy-timeout', 'leave-grace', 'webhook-wake', 'reconcile-sim'].map(runs),
    );
    const intervals = (Date.now() - start) / 250;
    after.forEach((count, i) => {
      const ran = count - before[i];
      expect(ran).toBeGreaterThan(1); // it keeps running (how often is the benchmark's business, not a test's)
      expect(ran).toBeLessThanOrEqual(intervals + 2); // but once per interval, not once per process
    });
  } finally {
    await Promise.all(workers.map((w) => w.kill()));
  }
});

it('a heartbeat sweep over 20,000 live bots with 10 expired reads only those 10', async () => {
  const t = await startTestFleet(
    { PLATFORM_PRIORITY: 'sim', HEARTBEAT_TIMEOUT_MS: '60000' },
    { api: true, workers: false },
  );
  fleets.push(t);
  const now = Date.now();
  const docs = Array.from({ length: 20_000 }, (_, i) =>
    storedBot({
      ownerId: 'sweep-owner',
      status: 'IN_CALL',
      platform: 'sim',
      platformIdentifier: `c${i}`,
      createdAt: new Date(now),
      statusVersion: 3,
    }),
  );
  for (let i = 0; i < docs.length; i += 2000) await t.fleet.models.Bot.collection.insertMany(docs.slice(i, i + 2000));
  const liveState = createLiveState(t.fleet.redis, t.env.REDIS_PREFIX);
  const expired = new Set(docs.slice(0, 10).map((d) => String(d._id)));
  const batch = t.fleet.redis.pipeline();
  for (const doc of docs)
    batch.zadd(`${t.env.REDIS_PREFIX}:heartbeats`, expired.has(String(doc._id)) ? now - 120_000 : now, String(doc._id));
  await batch.exec();

  const read: string[] = [];
  const repo = { ...t.fleet.repo, findById: (id: string) => (read.push(id), t.fleet.repo.findById(id)) };
  const deps = {
    liveState,
    repo,
    lifecycle: t.fleet.lifecycle,
    outbox: t.fleet.outbox,
    heartbeatTimeoutMs: 60_000,
    deployTimeoutMs: 1,
  };
  const result = await sweepHeartbeats(deps, now);

  expect(result).toEqual({ read: 10, acted: 10 });
  expect(new Set(read)).toEqual(expired);
  const fatal = await Promise.all([...expired].map((id) => t.fleet.repo.findById(id)));
  expect(fatal.map((b) => `${b?.status}/${b?.endReason}`)).toEqual(Array(10).fill('FATAL/HEARTBEAT_TIMEOUT'));
  expect(await t.fleet.redis.zcard(`${t.env.REDIS_PREFIX}:heartbeats`)).toBe(19_990);
  // a second sweep finds nothing
  expect(await sweepHeartbeats(deps, now)).toEqual({ read: 0, acted: 0 });
});

it('reconciliation of 2,000 held bots reads only where the platform and the fleet disagree', async () => {
  const t = await startTestFleet({ PLATFORM_PRIORITY: 'sim' }, { api: true, workers: false });
  fleets.push(t);
  const now = Date.now();
  const botDoc = (status: string, minutesAgo: number) =>
    storedBot({
      ownerId: 'reconcile-owner',
      status,
      platform: 'sim',
      createdAt: new Date(now - minutesAgo * 60_000),
      deployedAt: new Date(now - minutesAgo * 60_000),
      statusVersion: 3,
    });
  const withName = <T extends { _id: Types.ObjectId }>(doc: T) => ({
    ...doc,
    platformIdentifier: deploymentName(String(doc._id), 'sim'),
  });
  const healthy = Array.from({ length: 1_997 }, () => String(new Types.ObjectId())); // held and listed: never read
  const lost = Array.from({ length: 3 }, () => withName(botDoc('IN_CALL', 5))); // held, container gone
  const ended = withName(botDoc('ENDED', 5)); // container left behind by an ended bot
  const awaitingAdoption = withName(botDoc('IN_CALL', 5)); // listed, not held: its worker died a moment ago
  const unknown = String(new Types.ObjectId()); // a container with no bot at all
  await t.fleet.models.Bot.collection.insertMany([...lost, ended, awaitingAdoption] as never[]);

  const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim');
  const listedBots = [...healthy, String(ended._id), String(awaitingAdoption._id), unknown];
  await t.fleet.redis.hset(
    keys.containers,
    Object.fromEntries(listedBots.map((id) => [deploymentName(id, 'sim'), '{}'])),
  );
  await t.fleet.redis.hset(
    keys.owners,
    Object.fromEntries(listedBots.map((id) => [deploymentName(id, 'sim'), t.env.REDIS_PREFIX])),
  );

  const sim = createSimPlatform({
    name: 'sim',
    redis: t.fleet.redis,
    host: t.env.REDIS_PREFIX,
    fleetId: t.env.REDIS_PREFIX,
  });
  const read: string[] = [];
  const statusCalls: string[] = [];
  const repo = { ...t.fleet.repo, findById: (id: string) => (read.push(id), t.fleet.repo.findById(id)) };
  const platform = { ...sim, status: (identifier: string) => (statusCalls.push(identifier), sim.status(identifier)) };
  const held = [...healthy, ...lost.map((b) => String(b._id))];
  const reconcile = () =>
    reconcilePlatform(
      {
        repo,
        lifecycle: t.fleet.lifecycle,
        platform,
        settleMs: 60_000,
        heldBotIds: () => Promise.resolve(held),
        parkedBotIds: () => Promise.resolve([]),
        wake: () => Promise.resolve(),
      },
      now,
    );

  expect(await reconcile()).toEqual({ read: 6, acted: 3, stopped: 2, lostStarts: 0 });
  expect(new Set(read)).toEqual(
    new Set([...lost.map((b) => String(b._id)), String(ended._id), String(awaitingAdoption._id), unknown]),
  );
  expect(statusCalls.sort()).toEqual(lost.map((b) => b.platformIdentifier).sort());
  const lostNow = await Promise.all(lost.map((b) => t.fleet.repo.findById(String(b._id))));
  expect(lostNow.map((b) => `${b?.status}/${b?.endReason}`)).toEqual(Array(3).fill('FATAL/CONTAINER_LOST'));
  expect(await t.fleet.redis.hlen(keys.containers)).toBe(1_998); // the ended bot's and the unknown container are gone
  expect(await t.fleet.redis.hexists(keys.containers, awaitingAdoption.platformIdentifier)).toBe(1);
});
