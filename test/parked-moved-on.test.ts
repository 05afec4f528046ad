import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'bullmq';
import { occupyJob, occupyJobId } from '../queues/queue-names';
import { createRedis } from '../src/connections';
import { createLogger } from '../src/logger';
import { createDeploySlots, DeploySlots } from '../src/placement/deploy-slots';
import { createEndSignals, EndSignals } from '../src/placement/end-signals';
import { occupyingBotIds } from '../src/placement/occupancy';
import { createLocalPlatform } from '../src/platforms/local/local.platform';
import { deploymentName, Platform } from '../src/platforms/platform';
import { occupy, OccupyContext } from '../workers/occupy';
import { startPlatformWorker } from '../workers/platform.worker';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * A `local` occupy job parked while its bot's process ran on another host ('awaiting-host') may wake after
 * the bot moved on: placed on another platform, handed back to the global queue, or ended on another
 * platform. The woken job stops what is left of the bot on its own platform, but the bot is not its to
 * release: it stays in the live index (recovery's list after a Redis data loss) for the job that holds it
 * now. Two local platform instances play hosts A and B of one fleet (real processes, Redis and FerretDB);
 * host B runs its jobs through the platform worker once, and through occupy() itself otherwise, as a worker
 * of each host would.
 */
jest.setTimeout(120_000);

let t: TestFleet;
let endSignals: EndSignals;
let slots: DeploySlots;
const hosts: Platform[] = [];
const runDirs: string[] = [];
/** The deployment names of host A's processes, stopped at the end if a failing test left any. */
const leftovers: string[] = [];
const log = createLogger({ level: 'error' });

const host = (hostId: string) => {
  const runDir = mkdtempSync(path.join(os.tmpdir(), `meeboter-moved-on-${hostId}-`));
  runDirs.push(runDir);
  const platform = createLocalPlatform({
    name: 'local',
    command: 'exec sleep 600',
    runDir,
    fleetId: t.fleet.fleetId,
    hostId,
    redis: t.fleet.redis,
    prefix: t.env.REDIS_PREFIX,
    leaseRenewMs: 10_000,
    hostGoneAfterMs: 300_000,
    stopGraceMs: 1000,
  });
  hosts.push(platform);
  return platform;
};

let hostA: Platform;
let hostB: Platform;

beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'local,sim' }, { api: true, workers: false });
  const subscriber = createRedis(t.urls.redisUrl, 'subscriber');
  endSignals = await createEndSignals({
    redis: t.fleet.redis,
    subscriber,
    prefix: t.env.REDIS_PREFIX,
    hasEnded: () => Promise.resolve(false),
  });
  slots = createDeploySlots(t.fleet.redis, t.env.REDIS_PREFIX, 1, 10_000);
  hostA = host('host-a');
  hostB = host('host-b');
});

afterAll(async () => {
  // Whatever a failing test left running on host A.
  await Promise.all(
    leftovers.map(async (name) => {
      const deployment = await hostA.adopt(name);
      if (deployment && deployment.state !== 'elsewhere') await hostA.stop(deployment.identifier);
    }),
  );
  await Promise.all(hosts.map((platform) => platform.close()));
  for (const runDir of runDirs) rmSync(runDir, { recursive: true, force: true });
  await endSignals.close();
  await t.close();
});

const contextOn = (platform: Platform): OccupyContext => ({
  settings: t.fleet.config.platforms.find((settings) => settings.name === 'local')!,
  platform,
  repo: t.fleet.repo,
  lifecycle: t.fleet.lifecycle,
  placement: t.fleet.placement,
  slots,
  endSignals,
  botEnv: () => ({}),
  log,
});
const run = (platform: Platform, botId: string, parked: boolean) =>
  occupy(contextOn(platform), { botId, parked, queuedAtMs: Date.now(), signal: new AbortController().signal });

const inLiveIndex = async (botId: string) => (await t.fleet.repo.liveBots()).some((entry) => entry.id === botId);

const placedOnSim = (botId: string) => t.fleet.lifecycle.claim(botId, 'sim');

/**
 * A bot whose `local` process host A started (as its job there did before the bot moved on), moved on by
 * `moveOn` (by default: placed on `sim`).
 */
async function placedWithProcessOnHostA(moveOn: (botId: string) => Promise<unknown> = placedOnSim) {
  const created = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  expect(created.status).toBe(201);
  const botId = created.body.id as string;
  const name = deploymentName(botId, 'local', 0);
  leftovers.push(name);
  const deployment = await hostA.deploy({
    botId,
    name,
    attempt: 0,
    meetingPlatform: 'zoom',
    maxDurationMs: null,
    env: {},
  });
  await moveOn(botId);
  return { botId, name, deployment };
}

/** As placedWithProcessOnHostA, and its `local` job, run by host B, waits parked for host A to stop the process. */
async function parkedOnHostB(moveOn?: (botId: string) => Promise<unknown>) {
  const placed = await placedWithProcessOnHostA(moveOn);
  expect(await run(hostB, placed.botId, false)).toBe('awaiting-host');
  expect(await inLiveIndex(placed.botId)).toBe(true);
  return placed;
}

it('a woken job whose bot is live on another platform stops its own leftover and leaves the bot in the live index', async () => {
  const { botId, name, deployment } = await parkedOnHostB();
  // Woken on host B while host A's process still runs: it keeps waiting, as before.
  expect(await run(hostB, botId, true)).toBe('awaiting-host');
  // Woken on host A, the process's own host: it stops the process, and the bot stays in the live index.
  const pidFile = path.join(runDirs[0], `${name}.pid`);
  const pid = Number(JSON.parse(readFileSync(pidFile, 'utf8')).pid);
  expect(deployment.identifier).toBe(`${pid}@host-a`);
  const outcome = await run(hostA, botId, true);
  expect(await inLiveIndex(botId)).toBe(true);
  expect(outcome).toBe('not-ours');
  expect(await hostA.adopt(name)).toBeNull();
  expect(existsSync(pidFile)).toBe(false);
  expect(await t.fleet.repo.findById(botId)).toMatchObject({ status: 'DEPLOYING', platform: 'sim' });
});

it('through the worker: the woken job completes, freeing only its own capacity, and the bot stays in the live index', async () => {
  const settings = t.fleet.config.platforms.find((platform) => platform.name === 'local')!;
  const context = contextOn(hostB);
  const worker = startPlatformWorker(
    {
      queues: t.fleet.queues,
      placement: t.fleet.placement,
      lifecycle: t.fleet.lifecycle,
      occupyContext: context,
      log,
      dispatchTickMs: 1000,
      lockDurationMs: 10_000,
      makeWorker: (name, processor, options) =>
        new Worker(name, processor, {
          connection: { url: t.urls.redisUrl, maxRetriesPerRequest: null },
          prefix: t.env.REDIS_PREFIX,
          ...options,
        }),
      countRun: () => Promise.resolve(),
      keepScheduled: (upsert) => upsert().then(() => undefined),
    },
    settings,
    hostB,
  );
  try {
    const queue = t.fleet.queues.platforms.get('local')!;
    const { botId, deployment } = await placedWithProcessOnHostA();
    const jobId = occupyJobId(botId, 'local');
    const { name, data, opts } = occupyJob(botId, 'local');
    await queue.add(name, data, opts);
    // Host B's run finds the bot gone from `local` and its process on host A: the job waits, holding the unit.
    await waitFor(async () => (await queue.getJobState(jobId)) === 'delayed', 'the job to wait parked for host A');
    expect((await queue.getJob(jobId))!.data).toMatchObject({ parked: true });
    expect(await occupyingBotIds(queue)).toEqual([botId]);
    // Host A stops its process; the job wakes (promoted here, as its recheck or reconciliation does).
    await hostA.stop(deployment.identifier);
    await (await queue.getJob(jobId))!.promote();
    await waitFor(async () => (await queue.getJobState(jobId)) === 'completed', 'the woken job to complete');
    expect(await inLiveIndex(botId)).toBe(true);
    expect((await queue.getJob(jobId))!.returnvalue).toBe('not-ours');
    expect(await occupyingBotIds(queue)).toEqual([]);
    expect(await t.fleet.repo.findById(botId)).toMatchObject({ status: 'DEPLOYING', platform: 'sim' });
  } finally {
    await worker.close();
  }
});

it('a woken job whose bot was handed back to the global queue leaves the bot in the live index', async () => {
  const { botId, deployment } = await parkedOnHostB();
  // (after the job parked: a job that finds its bot queued claims it)
  await t.fleet.placement.handBack(botId, 'sim', 'failed', 'its start failed');
  await hostA.stop(deployment.identifier);
  expect(await t.fleet.repo.findById(botId)).toMatchObject({ status: 'QUEUED', platform: null });
  const outcome = await run(hostB, botId, true);
  expect(await inLiveIndex(botId)).toBe(true);
  expect(outcome).toBe('not-ours');
});

it('a woken job whose bot ended on another platform leaves its release to that platform’s job', async () => {
  const { botId, deployment } = await parkedOnHostB(async (id) => {
    await placedOnSim(id);
    await t.fleet.lifecycle.end(id, 'ENDED', 'COMPLETED');
  });
  await hostA.stop(deployment.identifier);
  const outcome = await run(hostB, botId, true);
  expect(await inLiveIndex(botId)).toBe(true);
  expect(outcome).toBe('ended-before-deploy');
});

it('a woken job whose bot ended on this platform still releases it, once its host stopped the process', async () => {
  const { botId, deployment } = await parkedOnHostB(async (id) => {
    await t.fleet.lifecycle.claim(id, 'local');
    await t.fleet.lifecycle.end(id, 'ENDED', 'COMPLETED');
  });
  await hostA.stop(deployment.identifier);
  expect(await run(hostB, botId, true)).toBe('released');
  expect(await inLiveIndex(botId)).toBe(false);
});
