import { appendFileSync, writeFileSync } from 'node:fs';
import { Types } from 'mongoose';
import { simHostKeys } from '../src/platforms/sim/sim.platform';
import { platformQueueName } from '../queues/queue-names';
import { Queue } from 'bullmq';
import { FleetProcess, meetings, sleep, spawnFleetProcess, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * Placement invariants with several OS processes: the API runs in this process, worker groups in two
 * (or more) `node dist/src/main.js worker` processes, all on one Redis and one database.
 */
jest.setTimeout(240_000);

interface Run {
  t: TestFleet;
  workers: FleetProcess[];
  limits: Record<string, number>;
  samples: Record<string, number[]>;
  stopSampling(): void;
  spawnWorker(): FleetProcess;
  /** Starts the two worker processes every test runs with. */
  startWorkers(): void;
}

async function startRun(limits: Record<string, number>, extraEnv: Record<string, string> = {}): Promise<Run> {
  const names = Object.keys(limits);
  const env: Record<string, string> = {
    PLATFORM_PRIORITY: names.join(','),
    GLOBAL_QUEUE_TIMEOUT_MS: '600000',
    WORKER_LOCK_DURATION_MS: '2000',
    ...Object.fromEntries(
      names.map((name) => [`${name.toUpperCase().replace(/-/g, '_')}_BOT_LIMIT`, String(limits[name])]),
    ),
    ...extraEnv,
  };
  const t = await startTestFleet(env, { api: true, workers: false });
  const workerEnv = { ...t.env, PORT: '0' };
  const spawnWorker = () => spawnFleetProcess('worker', workerEnv);
  const workers: FleetProcess[] = [];

  // The platforms' own count (containers on the sim host) and BullMQ's active count, sampled throughout.
  const samples: Record<string, number[]> = Object.fromEntries(
    names.flatMap((n) => [
      [n, []],
      [`${n}:active`, []],
    ]),
  );
  const queues = names.map(
    (name) => new Queue(platformQueueName(name), { connection: t.fleet.redis, prefix: t.env.REDIS_PREFIX }),
  );
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      for (const [i, name] of names.entries()) {
        samples[name].push(await t.fleet.redis.hlen(simHostKeys(t.env.REDIS_PREFIX, name).containers));
        samples[`${name}:active`].push(await queues[i].getActiveCount());
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    t,
    workers,
    limits,
    samples,
    spawnWorker,
    startWorkers: () => workers.push(spawnWorker(), spawnWorker()),
    stopSampling: () => {
      sampling = false;
      void loop.then(() => Promise.all(queues.map((q) => q.close())));
    },
  };
}

async function endRun(run: Run) {
  run.stopSampling();
  if (process.env.KEEP_WORKER_LOGS) {
    run.workers.forEach((w, i) => writeFileSync(`/tmp/worker-${i}.log`, w.output()));
  }
  await Promise.all(run.workers.map((w) => w.kill('SIGTERM')));
  await run.t.close();
}

async function createBots(t: TestFleet, count: number, metadata: Record<string, string>) {
  const results = await Promise.all(
    Array.from({ length: count }, () => t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, metadata } })),
  );
  expect(results.every((r) => r.status === 201)).toBe(true);
  return results.map((r) => r.body.id as string);
}

async function waitAllEnded(t: TestFleet, ids: string[], timeoutMs = 180_000) {
  await waitFor(
    async () =>
      (await t.fleet.models.Bot.countDocuments({ _id: { $in: ids }, status: { $in: ['ENDED', 'FATAL'] } })) ===
      ids.length,
    `all ${ids.length} bots to end`,
    timeoutMs,
    1000,
  ).catch(async (error) => {
    const stuck = await t.fleet.models.Bot.aggregate([
      { $match: { _id: { $in: ids.map((id) => new Types.ObjectId(id)) } } },
      { $group: { _id: { status: '$status', platform: '$platform' }, n: { $sum: 1 } } },
    ]);
    const platforms = await t.fleet.placement.stats();
    const stuckBots = await t.fleet.models.Bot.find({
      _id: { $in: ids },
      status: { $nin: ['ENDED', 'FATAL', 'QUEUED'] },
    })
      .limit(4)
      .lean();
    for (const bot of stuckBots) {
      const events = await t.fleet.repo.events(String(bot._id), 100);
      appendFileSync(
        '/tmp/stuck.log',
        `${String(bot._id)} ${bot.status} ${bot.platform}\n` +
          events
            .map((e) => `  ${e.at.toISOString()} ${e.type} ${e.status ?? ''} ${e.data ? JSON.stringify(e.data) : ''}`)
            .join('\n') +
          '\n',
      );
    }
    throw new Error(`${error.message}; bots: ${JSON.stringify(stuck)}; platforms: ${JSON.stringify(platforms)}`);
  });
  return t.fleet.models.Bot.find({ _id: { $in: ids } }).lean();
}

/** Per bot, how many containers the sim hosts created for it, summed over platforms. */
async function deploysPerBot(t: TestFleet, platforms: string[]) {
  const counts = new Map<string, number>();
  for (const name of platforms) {
    const hash = await t.fleet.redis.hgetall(simHostKeys(t.env.REDIS_PREFIX, name).deploys);
    for (const [container, n] of Object.entries(hash)) {
      const botId = container.split('-')[1];
      counts.set(botId, (counts.get(botId) ?? 0) + Number(n));
    }
  }
  return counts;
}

async function peaks(t: TestFleet, platforms: string[]) {
  const out: Record<string, number> = {};
  for (const name of platforms) out[name] = Number(await t.fleet.redis.get(simHostKeys(t.env.REDIS_PREFIX, name).peak));
  return out;
}

it('300 concurrent bots on three platforms (limits 3, 5, 7) with 2 worker processes: limits hold, each deployed once, FIFO, none lost', async () => {
  const run = await startRun({ 'sim-a': 3, 'sim-b': 5, 'sim-c': 7 });
  try {
    // Every bot is queued before the workers start, so the whole run is a FIFO test (with workers already
    // running, how many bots get placed during the burst depends on the machine's speed).
    const ids = await createBots(run.t, 300, { 'sim.durationMs': '150' });
    run.startWorkers();
    const bots = await waitAllEnded(run.t, ids);
    run.stopSampling();

    expect(bots.filter((b) => b.status === 'ENDED' && b.endReason === 'COMPLETED')).toHaveLength(300);
    const platforms = Object.keys(run.limits);
    const peak = await peaks(run.t, platforms);
    for (const name of platforms) {
      expect([name, peak[name]]).toEqual([name, run.limits[name]]); // reached, never exceeded
      expect([name, Math.max(...run.samples[name])]).toEqual([name, expect.any(Number)]);
      expect(Math.max(...run.samples[name])).toBeLessThanOrEqual(run.limits[name]);
      expect(Math.max(...run.samples[`${name}:active`])).toBeLessThanOrEqual(run.limits[name]);
    }
    const deploys = await deploysPerBot(run.t, platforms);
    expect(ids.filter((id) => deploys.get(id) !== 1)).toEqual([]);

    // FIFO: bots were assigned to platforms in global-queue order (creation order).
    const assigned = await run.t.fleet.models.BotEvent.find({ type: 'attempt.assigned', botId: { $in: ids } }).lean();
    const assignedAt = new Map(assigned.map((e) => [String(e.botId), e.at.getTime()]));
    expect(assignedAt.size).toBe(300);
    const inCreationOrder = [...bots].sort(
      (x, y) => x.createdAt.getTime() - y.createdAt.getTime() || (String(x._id) < String(y._id) ? -1 : 1),
    );
    const outOfOrder = inCreationOrder.filter(
      (b, i) => i > 0 && assignedAt.get(String(b._id))! < assignedAt.get(String(inCreationOrder[i - 1]._id))!,
    );
    expect(outOfOrder.map((b) => String(b._id))).toEqual([]);
  } finally {
    await endRun(run);
  }
});

/** Bots a worker process deployed, read from its own `deployed` log lines. */
function deployedBy(worker: FleetProcess): string[] {
  return worker
    .output()
    .split('\n')
    .filter((line) => line.includes('"msg":"deployed"'))
    .flatMap((line) => /"botId":"([0-9a-f]{24})"/.exec(line)?.[1] ?? []);
}

it('a worker holding live bots is SIGKILLed and replaced: its bots are adopted, no double deploy, limits hold, every bot completes', async () => {
  const run = await startRun({ 'sim-a': 4, 'sim-b': 6 }, { LOG_LEVEL: 'info' });
  try {
    run.startWorkers();
    const ids = await createBots(run.t, 40, { 'sim.durationMs': '2500' });
    // Kill a worker that holds bots in call right now: which worker BullMQ hands the jobs to is up to it.
    const inCall = async (botIds: string[]) =>
      run.t.fleet.models.Bot.countDocuments({ _id: { $in: botIds }, status: 'IN_CALL' });
    const victim = await waitFor(async () => {
      for (const worker of run.workers) if ((await inCall(deployedBy(worker))) >= 3) return worker;
      return undefined;
    }, 'a worker with 3 bots in call');
    await victim.kill('SIGKILL');
    run.workers.push(run.spawnWorker());
    // A dead process sends nothing more, so what was live just after the kill must be taken over by another worker.
    await sleep(200);
    const victimBots = await run.t.fleet.models.Bot.find({ _id: { $in: deployedBy(victim) } }).lean();
    const orphaned = victimBots.filter((b) => !['ENDED', 'FATAL'].includes(b.status)).map((b) => String(b._id));
    expect(orphaned.length).toBeGreaterThanOrEqual(1);

    const bots = await waitAllEnded(run.t, ids);
    run.stopSampling();

    expect(bots.map((b) => `${b.status}/${b.endReason}`).filter((s) => s !== 'ENDED/COMPLETED')).toEqual([]);
    const platforms = Object.keys(run.limits);
    const peak = await peaks(run.t, platforms);
    for (const name of platforms) {
      expect(peak[name]).toBeLessThanOrEqual(run.limits[name]);
      expect(Math.max(...run.samples[name])).toBeLessThanOrEqual(run.limits[name]);
      expect(Math.max(...run.samples[`${name}:active`])).toBeLessThanOrEqual(run.limits[name]);
    }
    const deploys = await deploysPerBot(run.t, platforms);
    expect(ids.filter((id) => deploys.get(id) !== 1)).toEqual([]);
    const adopted = await run.t.fleet.models.BotEvent.find({
      type: 'attempt.adopted',
      botId: { $in: orphaned },
    }).lean();
    expect(orphaned.filter((id) => !adopted.some((e) => String(e.botId) === id))).toEqual([]);
  } finally {
    await endRun(run);
  }
});

it('a worker SIGKILLed while it retries a failed start: its replacement deploys that try once, under its name, and the bot never holds two units', async () => {
  const run = await startRun({ 'sim-a': 1, 'sim-b': 3 }, { LOG_LEVEL: 'info' });
  try {
    const { t } = run;
    const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim-a');
    await t.fleet.redis.set(keys.fault, 'fail-after-start'); // the first try's container is made, then its deploy fails
    const victim = run.spawnWorker();
    run.workers.push(victim);
    const [id] = await createBots(t, 1, { 'sim.durationMs': '1500' });
    // The first call took its fault when it was counted: the next try's call (after the retry's pause) hangs.
    await waitFor(async () => Number(await t.fleet.redis.get(keys.calls)) >= 1, 'the first deploy call', 30_000, 10);
    await t.fleet.redis.set(keys.fault, 'delay:600000');
    await waitFor(
      async () =>
        Number(await t.fleet.redis.get(keys.calls)) === 2 && Number(await t.fleet.redis.get(keys.inflight)) === 1,
      "the retry's deploy call to be in flight",
    );
    await victim.kill('SIGKILL');
    await t.fleet.redis.del(keys.fault);
    const eventsOf = async () =>
      (await t.request('GET', `/api/bots/${id}/events`)).body.data as Array<{ type: string; data?: unknown }>;
    const retried = (await eventsOf()).filter((e) => e.type === 'attempt.retried');
    expect(retried.map((e) => e.data)).toEqual([{ platform: 'sim-a', try: 1, name: `mb-${id}-sim-a--1` }]);

    // Another bot meanwhile: sim-a's one unit is still the retrying bot's, so it goes to sim-b.
    const [other] = await createBots(t, 1, { 'sim.durationMs': '1500' });
    run.workers.push(run.spawnWorker());
    const bots = await waitAllEnded(t, [id, other]);
    run.stopSampling();

    const byId = new Map(bots.map((b) => [String(b._id), b]));
    expect(byId.get(id)).toMatchObject({
      status: 'ENDED',
      endReason: 'COMPLETED',
      platform: 'sim-a',
      platformIdentifier: `mb-${id}-sim-a--1`,
    });
    expect(byId.get(other)).toMatchObject({ status: 'ENDED', endReason: 'COMPLETED', platform: 'sim-b' });
    // One container per try, each made once: the replacement neither deployed the failed try again nor skipped to a third.
    expect(await t.fleet.redis.hgetall(keys.deploys)).toEqual({ [`mb-${id}-sim-a`]: '1', [`mb-${id}-sim-a--1`]: '1' });
    const tries = (await eventsOf()).filter((e) => e.type.startsWith('attempt.') && e.type !== 'attempt.assigned');
    expect(tries.map((e) => e.type)).toEqual(['attempt.start-failed', 'attempt.retried', 'attempt.deployed']);
    expect(Number(await t.fleet.redis.get(keys.peak))).toBe(1);
    expect(Math.max(...run.samples['sim-a'])).toBeLessThanOrEqual(1);
    expect(Math.max(...run.samples['sim-a:active'])).toBeLessThanOrEqual(1);
  } finally {
    await endRun(run);
  }
});

it('no more than DEPLOYMENT_QUEUE_MAX_CONCURRENT deploys run at once across 2 processes', async () => {
  const run = await startRun({ sim: 30 }, { DEPLOYMENT_QUEUE_MAX_CONCURRENT: '2' });
  try {
    run.startWorkers();
    await run.t.fleet.redis.set(simHostKeys(run.t.env.REDIS_PREFIX, 'sim').fault, 'delay:250');
    const ids = await createBots(run.t, 16, { 'sim.durationMs': '100' });
    const bots = await waitAllEnded(run.t, ids);
    expect(bots.every((b) => b.endReason === 'COMPLETED')).toBe(true);
    const keys = simHostKeys(run.t.env.REDIS_PREFIX, 'sim');
    expect(Number(await run.t.fleet.redis.get(keys.inflightPeak))).toBe(2);
    expect(Number(await run.t.fleet.redis.get(keys.calls))).toBe(16);
  } finally {
    await endRun(run);
  }
});

it('deploys slower than the deploy-slot lease: with DEPLOYMENT_QUEUE_MAX_CONCURRENT=4 across 3 processes, never a 5th at once', async () => {
  // Each lease lasts WORKER_LOCK_DURATION_MS (2 s here) unless renewed; each deploy takes 6 s.
  const run = await startRun({ sim: 30 }, { DEPLOYMENT_QUEUE_MAX_CONCURRENT: '4' });
  const keys = simHostKeys(run.t.env.REDIS_PREFIX, 'sim');
  try {
    await run.t.fleet.redis.set(keys.fault, 'delay:6000');
    run.startWorkers();
    run.workers.push(run.spawnWorker());
    // The sim host's own count of deploy calls running, sampled from outside the fleet.
    const running: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        running.push(Number(await run.t.fleet.redis.get(keys.inflight)));
        await sleep(50);
      }
    })();
    const ids = await createBots(run.t, 12, { 'sim.durationMs': '100' });
    const bots = await waitAllEnded(run.t, ids);
    sampling = false;
    await sampler;
    expect(bots.every((b) => b.endReason === 'COMPLETED')).toBe(true);
    expect(Math.max(...running)).toBe(4);
    expect(Number(await run.t.fleet.redis.get(keys.inflightPeak))).toBe(4);
    const deploys = await deploysPerBot(run.t, ['sim']);
    expect(ids.filter((id) => deploys.get(id) !== 1)).toEqual([]);
    process.stdout.write(
      `slow deploys (6 s, lease 2 s, cap 4, 3 processes): ${running.length} samples, peak ${Math.max(...running)}\n`,
    );
  } finally {
    await endRun(run);
  }
});
