import { ChildProcess, spawn } from 'node:child_process';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';
import { occupyJobId } from '../queues/queue-names';
import { endedSignal } from '../src/placement/end-signals';
import { applyKeyChanges } from '../src/store/bot-changes';
import { simHostKeys } from '../src/platforms/sim/sim.platform';
import { park } from '../workers/platform.worker';
import { occupyingBotIds } from '../src/placement/occupancy';
import {
  botOf,
  eventsOf,
  FleetProcess,
  meetings,
  sleep,
  spawnFleetProcess,
  startTestFleet,
  TestFleet,
  waitFor,
  waitForStatus,
} from './support/fleet';

/**
 * A bot running on a platform any process can stop (here `sim` with its bots on a sim host process, as
 * k8s, aws and coolify are) is held by a parked occupy job: delayed in BullMQ, so it counts against the
 * platform's limit while no worker keeps anything of it. Ending the bot wakes the job, which stops the
 * container and frees the capacity.
 */
const LIMIT = 2;
const HANG = { 'sim.behavior': 'hang' };
let t: TestFleet;
let simHost: ChildProcess;
let worker: FleetProcess;

const queue = () => t.fleet.queues.platforms.get('sim')!;
const jobState = (botId: string) => queue().getJobState(occupyJobId(botId, 'sim'));
const keys = () => simHostKeys(t.env.REDIS_PREFIX, 'sim');
const containerOf = async (botId: string) => (await t.fleet.redis.hexists(keys().containers, `mb-${botId}-sim`)) === 1;
const create = async () => {
  const res = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, metadata: HANG } });
  expect(res.status).toBe(201);
  return res.body.id as string;
};
const parked = (botId: string) =>
  waitFor(async () => (await jobState(botId)) === 'delayed', `bot ${botId}'s job to be parked`);
const startWorker = () => spawnFleetProcess('worker', { ...t.env, PORT: '0' });

beforeAll(async () => {
  // The API (and its withdrawal) in this process; the workers in processes of their own, so one can be killed.
  t = await startTestFleet(
    // A short platform queue timeout: a woken job waiting for a worker must not be taken for a late deploy.
    { SIM_RUNNER: 'sim-host', SIM_BOT_LIMIT: String(LIMIT), SIM_QUEUE_TIMEOUT_MS: '1000', SWEEP_INTERVAL_MS: '1000' },
    { api: true, workers: false },
  );
  simHost = spawn(process.execPath, ['dist/scripts/sim-host.js'], {
    env: { ...process.env, REDIS_URL: t.env.REDIS_URL, SIM_HOST: t.env.REDIS_PREFIX },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    simHost.stdout!.once('data', () => resolve());
    simHost.once('exit', (code) => reject(new Error(`the sim host exited (${code}) before it was ready`)));
  });
  worker = startWorker();
});

afterAll(async () => {
  await worker?.kill();
  const exited = new Promise((resolve) => simHost.once('exit', resolve));
  simHost.kill('SIGTERM');
  await exited;
  await t.close();
});

it('parked bots take the capacity; ending one wakes its job, which stops the container, and the next bot is placed', async () => {
  const [first, second, third] = [await create(), await create(), await create()];
  for (const id of [first, second]) {
    await waitForStatus(t, id, ['IN_CALL']);
    await parked(id);
  }
  // Both parked jobs count against the limit of 2: the third bot waits in the global queue.
  await sleep(1000);
  expect((await botOf(t, third)).status).toBe('QUEUED');
  expect((await t.request('GET', '/api/bots/pool-stats')).body).toMatchObject({
    total: LIMIT,
    busy: LIMIT,
    idle: 0,
    queueLength: 1,
  });
  const { platforms } = (await t.request('GET', '/api/platforms')).body;
  expect(platforms.find((p: { name: string }) => p.name === 'sim')).toMatchObject({ active: LIMIT, queued: 0 });

  expect((await t.request('DELETE', `/api/bots/${first}`)).status).toBeLessThan(300);
  // The cancel's withdrawal woke the job before the API answered.
  expect(await jobState(first)).not.toBe('delayed');
  await waitFor(async () => (await jobState(first)) === 'completed', 'the woken job to complete');
  expect(await containerOf(first)).toBe(false);
  expect((await eventsOf(t, first)).map((e) => e.type)).toContain('container.stopped');
  await waitForStatus(t, third, ['IN_CALL']);
  await parked(third);
  expect(Number(await t.fleet.redis.get(keys().peak))).toBe(LIMIT);

  for (const id of [second, third]) expect((await t.request('DELETE', `/api/bots/${id}`)).status).toBeLessThan(300);
  await waitFor(async () => (await t.fleet.redis.hlen(keys().containers)) === 0, 'every container stopped');
});

it('a parked job woken while its bot runs parks again and leaves the bot alone', async () => {
  const id = await create();
  await waitForStatus(t, id, ['IN_CALL']);
  await parked(id);
  const eventsBefore = (await eventsOf(t, id)).length;
  // What the periodic recheck does (PARKED_RECHECK_MS): the job runs again.
  await (await queue().getJob(occupyJobId(id, 'sim')))!.promote();
  await sleep(500);
  await parked(id);
  expect((await botOf(t, id)).status).toBe('IN_CALL');
  expect(await containerOf(id)).toBe(true);
  expect((await eventsOf(t, id)).length).toBe(eventsBefore);
  expect(Number(await t.fleet.redis.hget(keys().deploys, `mb-${id}-sim`))).toBe(1);
  await t.request('DELETE', `/api/bots/${id}`);
  await waitFor(async () => (await jobState(id)) === 'completed', 'its job to complete');
});

it('an end whose process died before waking the job is caught: by reconciliation, or by the recheck', async () => {
  const [announced, silent] = [await create(), await create()];
  for (const id of [announced, silent]) await parked(id);
  // Ended straight in the repository: no withdrawal, so nothing wakes the parked jobs.
  const end = (id: string) => t.fleet.repo.transition(id, { kind: 'move', to: 'ENDED', source: 'client' });
  await end(announced);
  await end(silent);
  // The end was announced (the ended set): the next reconciliation pass wakes the job.
  await applyKeyChanges(t.fleet.redis.multi(), endedSignal(t.env.REDIS_PREFIX, announced)).exec();
  await waitFor(async () => (await jobState(announced)) === 'completed', 'reconciliation to wake the announced end');
  expect(await containerOf(announced)).toBe(false);
  // Never announced: the job's own recheck finds it ended (promoted here instead of waiting 15 minutes).
  await sleep(2500);
  expect(await jobState(silent)).toBe('delayed');
  await (await queue().getJob(occupyJobId(silent, 'sim')))!.promote();
  await waitFor(async () => (await jobState(silent)) === 'completed', 'the recheck to stop the silent end');
  expect(await containerOf(silent)).toBe(false);
});

it('parked bots outlive a SIGKILLed (or stopped) worker: ending one then wakes its job for the next worker, and no bot is deployed twice', async () => {
  const [ending, staying] = [await create(), await create()];
  for (const id of [ending, staying]) await parked(id);
  await worker.kill('SIGKILL');
  expect((await t.request('DELETE', `/api/bots/${ending}`)).status).toBeLessThan(300);
  expect(await jobState(ending)).toBe('waiting'); // woken, with no worker to run it yet
  expect(await containerOf(ending)).toBe(true);
  // Waiting longer than the platform's queue timeout, it is still no deploy that is late: a dispatcher tick
  // leaves it (removing it would free the capacity while the container runs).
  await sleep(1500);
  await t.fleet.placement.dispatch();
  expect(await jobState(ending)).toBe('waiting');
  // Nor is its container reconciliation's to stop: the job still holds it (a second, concurrent stop could
  // reach whichever bot takes the capacity next).
  expect(await occupyingBotIds(queue())).toEqual(expect.arrayContaining([ending, staying]));
  worker = startWorker();
  await waitFor(async () => (await jobState(ending)) === 'completed', 'the next worker to stop the ended bot');
  expect(await containerOf(ending)).toBe(false);
  expect(await jobState(staying)).toBe('delayed');
  expect((await botOf(t, staying)).status).toBe('IN_CALL');
  // A graceful stop hands back active jobs only: the parked one stays as it is, its bot in call.
  await worker.kill('SIGTERM');
  expect(await jobState(staying)).toBe('delayed');
  expect((await botOf(t, staying)).status).toBe('IN_CALL');
  worker = startWorker();
  for (const id of [ending, staying]) expect(Number(await t.fleet.redis.hget(keys().deploys, `mb-${id}-sim`))).toBe(1);
  await t.request('DELETE', `/api/bots/${staying}`);
  await waitFor(async () => (await jobState(staying)) === 'completed', 'its job to complete');
});

it('a bot that ends while its job is being parked is woken by the parking itself', async () => {
  // A job taken by hand, as the worker holds it when occupy() answers "parked".
  const connection = new IORedis(t.env.REDIS_URL, { maxRetriesPerRequest: null });
  const prefix = t.env.REDIS_PREFIX;
  const name = `park-race-${Date.now()}`;
  const raceQueue = new Queue(name, { connection, prefix });
  await raceQueue.add('occupy', { botId: 'b', platform: 'sim' }, { jobId: 'b.sim' });
  const taker = new Worker(name, null, { connection, prefix, autorun: false });
  const token = 'taker';
  const job = await taker.getNextJob(token);
  expect(await job.getState()).toBe('active');
  // The end came after withdrawal looked (it found the job active): parking sees it and wakes the job.
  await park(job, token, () => Promise.resolve(true));
  expect(await raceQueue.getJobState('b.sim')).toBe('waiting');
  expect((await raceQueue.getJob('b.sim'))!.data).toMatchObject({ parked: true });
  // And with no end, the job stays parked.
  const other = await taker.getNextJob(token);
  await park(other, token, () => Promise.resolve(false));
  expect(await raceQueue.getJobState('b.sim')).toBe('delayed');
  await taker.close();
  await raceQueue.obliterate({ force: true });
  await raceQueue.close();
  await connection.quit();
});
