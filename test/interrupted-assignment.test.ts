import { Worker } from 'bullmq';
import { occupyJob, occupyJobId, platformQueueName } from '../queues/queue-names';
import { meetings, startTestFleet, TestFleet } from './support/fleet';

/**
 * The dispatcher assigns in three steps: it marks the assignment in flight, adds the occupy job, then takes
 * the bot out of the global queue. A dispatcher killed between them leaves the mark, and the next run
 * finishes the assignment: once, and without repeating an attempt that already ran to its end. Each case
 * below is the state a kill at one point leaves (no workers run here: the test plays them).
 */
jest.setTimeout(60_000);
let t: TestFleet;
let player: Worker;
beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim,sim-b' }, { api: true, workers: false });
  // As a recovery pass would have: the dispatcher places nobody before one did.
  await t.fleet.globalQueue.markRebuilt(await t.fleet.globalQueue.beginRebuild());
  player = new Worker(platformQueueName('sim'), null, {
    connection: { url: t.urls.redisUrl, maxRetriesPerRequest: null },
    prefix: t.env.REDIS_PREFIX,
  });
});
afterAll(async () => {
  await player.close(true);
  await t.close();
});

const sim = () => t.fleet.queues.platforms.get('sim')!;
const queuedBot = async () =>
  (await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } })).body.id as string;
const addOccupyJob = async (botId: string) => {
  const { name, data, opts } = occupyJob(botId, 'sim');
  await sim().add(name, data, opts);
};
/** Runs the sim job of `botId` to its end, as a worker would. */
const finishJob = async (botId: string) => {
  const job = await player.getNextJob('player');
  expect(job?.id).toBe(occupyJobId(botId, 'sim'));
  await job.moveToCompleted('released', 'player', false);
};

it('killed after adding the job: the next run takes the bot out of the queue and adds no second job', async () => {
  const botId = await queuedBot();
  await t.fleet.globalQueue.markInflight([{ botId, platform: 'sim' }]);
  await addOccupyJob(botId);
  const { timestamp } = (await sim().getJob(occupyJobId(botId, 'sim')))!;

  expect((await t.fleet.placement.dispatch()).placed).toBe(0);
  const job = await sim().getJob(occupyJobId(botId, 'sim'));
  expect([await job!.getState(), job!.timestamp]).toEqual(['waiting', timestamp]);
  expect(await t.fleet.globalQueue.position(botId)).toBeNull();
  expect(await t.fleet.globalQueue.inflight()).toEqual({});
  await job!.remove();
});

it('killed before adding the job, with an earlier attempt finished there: the next run places the bot again', async () => {
  const botId = await queuedBot();
  await addOccupyJob(botId);
  await finishJob(botId); // an earlier attempt on sim; its finished job keeps the id taken
  await t.fleet.globalQueue.markInflight([{ botId, platform: 'sim' }]);

  expect((await t.fleet.placement.dispatch()).placed).toBe(1);
  expect(await sim().getJobState(occupyJobId(botId, 'sim'))).toBe('waiting');
  expect(await t.fleet.globalQueue.position(botId)).toBeNull();
  await (await sim().getJob(occupyJobId(botId, 'sim')))!.remove();
});

it('killed before taking the bot out of the queue, and its attempt already failed: the attempt is not repeated', async () => {
  const botId = await queuedBot();
  await t.fleet.globalQueue.markInflight([{ botId, platform: 'sim' }]);
  await addOccupyJob(botId);
  // The job ran before the next dispatcher run: the deploy failed and the bot was handed back, sim excluded.
  await t.fleet.lifecycle.claim(botId, 'sim');
  await t.fleet.placement.handBack(botId, 'sim', 'failed', 'the deploy failed');
  await finishJob(botId);

  expect((await t.fleet.placement.dispatch()).placed).toBe(1);
  expect(await sim().getJobState(occupyJobId(botId, 'sim'))).toBe('completed');
  expect(await t.fleet.queues.platforms.get('sim-b')!.getJobState(occupyJobId(botId, 'sim-b'))).toBe('waiting');
  expect(await t.fleet.globalQueue.inflight()).toEqual({});
});
