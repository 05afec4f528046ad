import { simHostKeys } from '../src/platforms/sim/sim.platform';
import { eventsOf as events, meetings, startTestFleet, TestFleet, UntypedJson, waitFor } from './support/fleet';

/**
 * Ordered fallback and queueing (docs/invariants.md, order and queue) in one fleet process with its
 * workers: full platforms are skipped at once, failing ones after their retries, slow ones after their queue
 * timeout; the global queue times out; cancelled queued bots are never deployed; every attempt is in the
 * bot's events.
 */
jest.setTimeout(120_000);

const fleets: TestFleet[] = [];
afterEach(async () => {
  await Promise.all(fleets.splice(0).map((t) => t.close()));
});

async function fleet(env: Record<string, string>, workerPlatforms?: string) {
  const t = await startTestFleet({
    GLOBAL_QUEUE_TIMEOUT_MS: '600000',
    ...env,
    ...(workerPlatforms ? { WORKER_PLATFORMS: workerPlatforms } : {}),
  });
  fleets.push(t);
  return t;
}

const createBot = async (t: TestFleet, metadata: Record<string, string> = { 'sim.durationMs': '60000' }) => {
  const res = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, metadata } });
  expect(res.status).toBe(201);
  return res.body.id as string;
};

const bot = async (t: TestFleet, id: string) => (await t.request('GET', `/api/bots/${id}`)).body;
const waitStatus = (t: TestFleet, id: string, statuses: string[]) =>
  waitFor(
    async () => {
      const current = await bot(t, id);
      return statuses.includes(current.status) ? current : null;
    },
    `bot ${id} to reach ${statuses.join('/')}`,
  );

it('skips a full platform at once and records it', async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim-a,sim-b', SIM_A_BOT_LIMIT: '1', SIM_B_BOT_LIMIT: '5' });
  const first = await createBot(t);
  expect((await waitStatus(t, first, ['IN_CALL'])).platform).toBe('sim-a');
  const second = await createBot(t);
  expect((await waitStatus(t, second, ['IN_CALL'])).platform).toBe('sim-b');
  const assigned = (await events(t, second)).filter((e) => e.type === 'attempt.assigned');
  expect(assigned).toEqual([expect.objectContaining({ data: { platform: 'sim-b', skippedFull: ['sim-a'] } })]);
});

it('moves on from a platform whose deploys fail, after its retries, with every try recorded', async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim-a,sim-b' });
  const keysA = simHostKeys(t.env.REDIS_PREFIX, 'sim-a');
  await t.fleet.redis.set(keysA.fault, 'fail');
  const id = await createBot(t);
  const running = await waitStatus(t, id, ['IN_CALL']);
  expect(running.platform).toBe('sim-b');
  // SIM_A_START_RETRIES defaults to 2: three tries, each a deploy call retried 3 times as a transient failure.
  expect(Number(await t.fleet.redis.get(keysA.calls))).toBe(9);
  expect(await t.fleet.redis.hlen(keysA.containers)).toBe(0);
  const all = await events(t, id);
  const types = all.map((e) => (e.type === 'status' ? e.status : `${e.type}:${e.data?.platform ?? ''}`));
  expect(types).toEqual([
    'QUEUED',
    'attempt.assigned:sim-a',
    'DEPLOYING',
    'attempt.start-failed:sim-a',
    'attempt.retried:sim-a',
    'attempt.start-failed:sim-a',
    'attempt.retried:sim-a',
    'attempt.start-failed:sim-a',
    'attempt.failed:sim-a',
    'QUEUED',
    'attempt.assigned:sim-b',
    'DEPLOYING',
    'attempt.deployed:sim-b',
    'JOINING_CALL',
    'IN_CALL',
  ]);
  // Each try with its reason and its own deployment name.
  expect(all.filter((e) => e.type === 'attempt.start-failed').map((e) => [e.data.try, e.reason])).toEqual(
    [0, 1, 2].map((n) => [n, 'simulated transient deploy failure']),
  );
  expect(all.filter((e) => e.type === 'attempt.retried').map((e) => e.data)).toEqual([
    { platform: 'sim-a', try: 1, name: `mb-${id}-sim-a--1` },
    { platform: 'sim-a', try: 2, name: `mb-${id}-sim-a--2` },
  ]);
  expect(all.find((e) => e.type === 'attempt.failed').reason).toBe(
    'simulated transient deploy failure (after 3 tries)',
  );
});

it('with <NAME>_START_RETRIES=0 the first failed start excludes the platform', async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim-a,sim-b', SIM_A_START_RETRIES: '0' });
  const keysA = simHostKeys(t.env.REDIS_PREFIX, 'sim-a');
  await t.fleet.redis.set(keysA.fault, 'fail-permanent');
  const id = await createBot(t);
  expect((await waitStatus(t, id, ['IN_CALL'])).platform).toBe('sim-b');
  expect(Number(await t.fleet.redis.get(keysA.calls))).toBe(1);
  const types = (await events(t, id))
    .map((e) => e.type)
    .filter((type) => type.startsWith('attempt.') && type !== 'attempt.assigned');
  expect(types).toEqual(['attempt.start-failed', 'attempt.failed', 'attempt.deployed']);
});

it('a deploy that fails after the platform created its container stops that container before the bot moves on', async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim-a,sim-b' });
  const keysA = simHostKeys(t.env.REDIS_PREFIX, 'sim-a');
  await t.fleet.redis.set(keysA.fault, 'fail-after-start');
  const id = await createBot(t);
  expect((await waitStatus(t, id, ['IN_CALL'])).platform).toBe('sim-b');
  // Each try made one container under its own name, and each was stopped before the next one was made.
  expect(await t.fleet.redis.hgetall(keysA.deploys)).toEqual({
    [`mb-${id}-sim-a`]: '1',
    [`mb-${id}-sim-a--1`]: '1',
    [`mb-${id}-sim-a--2`]: '1',
  });
  expect(await t.fleet.redis.get(keysA.peak)).toBe('1');
  // Stopped: left there, it would run beside the bot's sim-b container for the bot's whole life.
  expect(await t.fleet.redis.hlen(keysA.containers)).toBe(0);
  expect((await events(t, id)).map((e) => `${e.type}:${e.data?.platform ?? ''}`)).toContain('attempt.failed:sim-a');
});

it('a deploy that fails after its bot already reports from the container keeps that bot where it runs', async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim-a,sim-b' });
  const keysA = simHostKeys(t.env.REDIS_PREFIX, 'sim-a');
  // The bot runs and reports for 1.5 s, then the deploy call fails (its start watch lost the API).
  await t.fleet.redis.set(keysA.fault, 'fail-after-run:1500');
  const id = await createBot(t);
  const name = `mb-${id}-sim-a`;
  const adopted = await waitFor(
    async () => (await events(t, id)).find((e) => e.type === 'attempt.adopted'),
    'the failed deploy to keep the bot',
  );
  expect(adopted).toMatchObject({
    reason: 'simulated failure after the container started running',
    data: { platform: 'sim-a', identifier: name },
  });
  // Still in the call on sim-a, in the one container made for it; never moved to sim-b.
  expect(await bot(t, id)).toMatchObject({ status: 'IN_CALL', platform: 'sim-a', platformIdentifier: name });
  expect(Number(await t.fleet.redis.hget(keysA.deploys, name))).toBe(1);
  expect(await t.fleet.redis.hexists(keysA.containers, name)).toBe(1);
  expect(Number(await t.fleet.redis.get(simHostKeys(t.env.REDIS_PREFIX, 'sim-b').calls))).toBe(0);
  expect((await events(t, id)).map((e) => e.type)).not.toContain('attempt.failed');
  // Held like any deployed bot: its cancel stops the container.
  expect((await t.request('DELETE', `/api/bots/${id}`)).status).toBe(200);
  await waitFor(
    async () => (await t.fleet.redis.hexists(keysA.containers, name)) === 0,
    'the kept container to be stopped',
  );
});

it('a permanent deploy failure on the last platform ends the bot DEPLOY_FAILED', async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim' });
  await t.fleet.redis.set(simHostKeys(t.env.REDIS_PREFIX, 'sim').fault, 'fail-permanent');
  const id = await createBot(t);
  const ended = await waitStatus(t, id, ['FATAL', 'ENDED']);
  expect(ended).toMatchObject({ status: 'FATAL', endReason: 'DEPLOY_FAILED' });
  // Retried twice first (SIM_START_RETRIES defaults to 2), each try under its own name, every one recorded.
  const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim');
  expect(Number(await t.fleet.redis.get(keys.calls))).toBe(3);
  expect(await t.fleet.redis.hgetall(keys.deploys)).toEqual({});
  const tries = (await events(t, id)).filter((e) => e.type.startsWith('attempt.') && e.type !== 'attempt.assigned');
  expect(tries.map((e) => `${e.type}:${e.data?.try ?? ''}`)).toEqual([
    'attempt.start-failed:0',
    'attempt.retried:1',
    'attempt.start-failed:1',
    'attempt.retried:2',
    'attempt.start-failed:2',
    'attempt.failed:',
  ]);
  expect(tries.filter((e) => e.type === 'attempt.start-failed').map((e) => e.reason)).toEqual(
    Array(3).fill('simulated permanent deploy failure'),
  );
});

it('a bot waiting for a platform longer than its queue timeout moves on to the next', async () => {
  // No worker runs sim-a's group, so a bot assigned there never starts deploying.
  const t = await fleet({ PLATFORM_PRIORITY: 'sim-a,sim-b', SIM_A_QUEUE_TIMEOUT_MS: '1000' }, 'sim-b');
  const id = await createBot(t);
  const running = await waitStatus(t, id, ['IN_CALL']);
  expect(running.platform).toBe('sim-b');
  const attempts = (await events(t, id)).filter((e) => e.type.startsWith('attempt.'));
  expect(attempts.map((e) => `${e.type}:${e.data.platform}`)).toEqual([
    'attempt.assigned:sim-a',
    'attempt.timed-out:sim-a',
    'attempt.assigned:sim-b',
    'attempt.deployed:sim-b',
  ]);
  expect(await t.fleet.redis.hlen(simHostKeys(t.env.REDIS_PREFIX, 'sim-a').deploys)).toBe(0);
});

it('a bot queued past GLOBAL_QUEUE_TIMEOUT_MS is FATAL with QUEUE_TIMEOUT, and shows its position meanwhile', async () => {
  // (long enough for the checks below to see it still queued, on a slow machine)
  const t = await fleet({ PLATFORM_PRIORITY: 'sim', SIM_BOT_LIMIT: '1', GLOBAL_QUEUE_TIMEOUT_MS: '6000' });
  const holder = await createBot(t);
  await waitStatus(t, holder, ['IN_CALL']);
  const waiting = await createBot(t);
  const queued = await bot(t, waiting);
  expect(queued).toMatchObject({ status: 'QUEUED', queuePosition: 1 });
  const platforms = (await t.request('GET', '/api/platforms')).body;
  expect(platforms.platforms[0]).toMatchObject({ name: 'sim', limit: 1, active: 1 });
  expect(platforms.globalQueue.length).toBe(1);
  const ended = await waitStatus(t, waiting, ['FATAL']);
  expect(ended.endReason).toBe('QUEUE_TIMEOUT');
  expect(await t.fleet.redis.hexists(simHostKeys(t.env.REDIS_PREFIX, 'sim').deploys, `mb-${waiting}-sim`)).toBe(0);
});

it("a create answers the bot's place in the global queue as it entered it", async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim', SIM_BOT_LIMIT: '1' });
  const holder = await createBot(t);
  await waitStatus(t, holder, ['IN_CALL']);
  const answers: UntypedJson[] = [];
  for (let i = 0; i < 3; i++) {
    answers.push(
      (
        await t.request('POST', '/api/bots', {
          body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '60000' } },
        })
      ).body,
    );
  }
  expect(answers.map((answer) => [answer.status, answer.queuePosition])).toEqual([
    ['QUEUED', 1],
    ['QUEUED', 2],
    ['QUEUED', 3],
  ]);
  expect((await bot(t, answers[2].id)).queuePosition).toBe(3);
});

it('cancelled queued bots are never deployed; the others are placed oldest first', async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim', SIM_BOT_LIMIT: '1' });
  const holder = await createBot(t, { 'sim.durationMs': '8000' }); // in call until every cancel is in
  await waitStatus(t, holder, ['IN_CALL']);
  const queued: string[] = [];
  for (let i = 0; i < 5; i++) queued.push(await createBot(t, { 'sim.durationMs': '100' }));
  const cancelled = [queued[0], queued[2], queued[4]];
  for (const id of cancelled) {
    const res = await t.request('DELETE', `/api/bots/${id}`);
    expect(res.body).toMatchObject({ status: 'ENDED', endReason: 'CANCELLED' });
  }
  for (const id of [holder, queued[1], queued[3]])
    expect((await waitStatus(t, id, ['ENDED'])).endReason).toBe('COMPLETED');
  const deploys = await t.fleet.redis.hgetall(simHostKeys(t.env.REDIS_PREFIX, 'sim').deploys);
  for (const id of cancelled) {
    expect(deploys[`mb-${id}-sim`]).toBeUndefined();
    expect((await events(t, id)).map((e) => e.type)).not.toContain('attempt.deployed');
  }
  const deployedAt = async (id: string) => new Date((await bot(t, id)).deployedAt).getTime();
  expect(await deployedAt(queued[1])).toBeLessThan(await deployedAt(queued[3]));
});

it('DELETE of a running bot stops its container and frees the capacity for the next one', async () => {
  const t = await fleet({ PLATFORM_PRIORITY: 'sim', SIM_BOT_LIMIT: '1' });
  const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim');
  const first = await createBot(t);
  await waitStatus(t, first, ['IN_CALL']);
  const second = await createBot(t);
  expect((await bot(t, second)).status).toBe('QUEUED');
  await t.request('DELETE', `/api/bots/${first}`);
  await waitFor(
    async () => (await t.fleet.redis.hexists(keys.containers, `mb-${first}-sim`)) === 0,
    'container stopped',
  );
  await waitStatus(t, second, ['IN_CALL']);
  expect((await events(t, first)).map((e) => e.type)).toContain('container.stopped');
  expect(Number(await t.fleet.redis.get(keys.peak))).toBe(1);
});

it('a bot that only timed out everywhere keeps waiting, until the global queue timeout', async () => {
  // sim-a has no worker (its waits time out); sim-b's deploys fail. Slow is not broken: the bot is offered to
  // sim-a again rather than failed, and the global queue timeout, counted from its first queueing, ends it.
  const t = await fleet(
    { PLATFORM_PRIORITY: 'sim-a,sim-b', SIM_A_QUEUE_TIMEOUT_MS: '300', GLOBAL_QUEUE_TIMEOUT_MS: '8000' },
    'sim-b',
  );
  await t.fleet.redis.set(simHostKeys(t.env.REDIS_PREFIX, 'sim-b').fault, 'fail-permanent');
  const id = await createBot(t);
  const ended = await waitStatus(t, id, ['FATAL', 'ENDED']);
  expect(ended.endReason).toBe('QUEUE_TIMEOUT');
  const attempts = (await events(t, id))
    .filter((e) => e.type.startsWith('attempt.'))
    .map((e) => `${e.type}:${e.data.platform}`);
  expect(attempts.filter((a) => a === 'attempt.timed-out:sim-a').length).toBeGreaterThanOrEqual(2);
  expect(attempts.filter((a) => a === 'attempt.failed:sim-b')).toHaveLength(1);
});
