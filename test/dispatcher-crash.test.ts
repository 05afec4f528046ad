import { Worker } from 'bullmq';
import { DISPATCH_QUEUE } from '../queues/queue-names';
import { DISPATCH_LOCK_MS } from '../workers/dispatch.worker';
import { FleetProcess, meetings, spawnFleetProcess, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * The dispatcher runs one job at a time across the fleet, so a process killed during a run leaves that job
 * active, with its lock, and every placement waits behind it. It must wait only until the lock lapses and
 * the job is found stalled (seconds), not for BullMQ's defaults (a 30 s lock, a stall check every 30 s).
 */
jest.setTimeout(60_000);
let t: TestFleet;
let dead: Worker | undefined;
let workers: FleetProcess | undefined;
beforeAll(async () => {
  // No workers of its own: the dead process takes the dispatch job without racing a live dispatcher for it.
  t = await startTestFleet({ SIM_BOT_LIMIT: '5' }, { api: true, workers: false });
});
afterAll(async () => {
  await dead?.close(true);
  await workers?.kill('SIGTERM');
  await t.close();
});

it('a dispatch run whose process died holds up placement only until its lock lapses', async () => {
  // The process that died: it took a dispatch job with the fleet's lock and then neither finished nor renewed it.
  dead = new Worker(DISPATCH_QUEUE, null, {
    connection: { url: t.urls.redisUrl, maxRetriesPerRequest: null },
    prefix: t.env.REDIS_PREFIX,
    lockDuration: DISPATCH_LOCK_MS,
  });
  await t.fleet.placement.kick('a wake-up the dead process takes');
  const job = await waitFor(
    () => dead!.getNextJob('token-of-a-dead-process'),
    'a dispatch job taken by the dead process',
  );
  expect(await t.fleet.queues.dispatch.getJobState(job.id!)).toBe('active');
  // The live workers start after it died.
  workers = spawnFleetProcess('worker', { ...t.env, PORT: '0' });

  const res = await t.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '60000' } },
  });
  expect(res.status).toBe(201);
  // The lock lapses after DISPATCH_LOCK_MS and the next stall check (every half of it) frees the queue.
  const placed = await waitFor(
    async () => {
      const bot = (await t.request('GET', `/api/bots/${res.body.id}`)).body;
      return bot.status === 'IN_CALL' ? bot : null;
    },
    'the bot placed once the dead run is found stalled',
    4 * DISPATCH_LOCK_MS,
  );
  expect(placed.platform).toBe('sim');
  expect(await t.fleet.queues.dispatch.getJobState(job.id!)).not.toBe('active');
});
