import { createSlotRecords } from '../src/platforms/coolify/slot.records';
import { BotClient } from '../src/sdk/bot-client';
import { runSimBot } from '../src/sdk/sim-bot';
import { CoolifyServer, startCoolifyServer } from './support/coolify-server';
import { COOLIFY_TOKEN, coolifyEnv } from './support/coolify';
import { FleetProcess, meetings, spawnFleetProcess, startTestFleet, TestFleet, waitFor } from './support/fleet';
import { botIdOfEnv } from './support/bot-id-of-env';

/**
 * The slot pool with several OS processes: the API here, two `node dist/src/main.js worker` processes
 * acquiring and releasing slots concurrently on one Redis, one database and one Coolify server.
 */
jest.setTimeout(300_000);

let t: TestFleet;
let coolify: CoolifyServer;
let workers: FleetProcess[] = [];

beforeAll(async () => {
  coolify = await startCoolifyServer({
    token: COOLIFY_TOKEN,
    onRunning: (_app, env, signal) => {
      void runSimBot(BotClient.fromEnv(env, signal), signal).catch(() => undefined);
    },
  });
  t = await startTestFleet(
    {
      PLATFORM_PRIORITY: 'coolify',
      COOLIFY_BOT_LIMIT: '5',
      ...coolifyEnv(coolify, {
        COOLIFY_MEETING_PLATFORMS: 'zoom,google-meet',
        COOLIFY_MIN_IDLE_SLOTS: '1',
        COOLIFY_POLL_INTERVAL_MS: '100',
      }),
      SLOT_RECOVERY_INTERVAL_MS: '2000',
      GLOBAL_QUEUE_TIMEOUT_MS: '600000',
      WORKER_LOCK_DURATION_MS: '5000',
    },
    { api: true, workers: false },
  );
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGTERM')));
  await t.close();
  await coolify.close();
});

it('20 concurrent bots, 2 worker processes, COOLIFY_BOT_LIMIT=5: one bot per slot, at most 5 slots held, every bot completes, every slot IDLE after', async () => {
  // At info level, so that a failure can be read from what the workers did (printed only then).
  const workerEnv = { ...t.env, PORT: '0', LOG_LEVEL: 'info' };
  workers = [spawnFleetProcess('worker', workerEnv), spawnFleetProcess('worker', workerEnv)];
  const base = `${t.env.REDIS_PREFIX}:coolify:${t.fleet.fleetId}`;
  const samples = { held: [] as number[], slots: [] as number[], running: [] as number[], sharedAssignments: 0 };
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      const [states, assigned] = await Promise.all([
        t.fleet.redis.hgetall(`${base}:state`),
        t.fleet.redis.hgetall(`${base}:assigned`),
      ]);
      samples.held.push(Object.values(states).filter((s) => s === 'STARTING' || s === 'BUSY').length);
      samples.slots.push(Object.keys(states).length);
      samples.running.push(coolify.running().length);
      const slotsAssigned = Object.values(assigned);
      if (new Set(slotsAssigned).size !== slotsAssigned.length) samples.sharedAssignments++;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();

  const created = await Promise.all(
    Array.from({ length: 20 }, () =>
      t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '1500' } } }),
    ),
  );
  const ids = created.map((r) => r.body.id as string);
  await waitFor(
    async () =>
      (await t.fleet.models.Bot.countDocuments({ _id: { $in: ids }, status: { $in: ['ENDED', 'FATAL'] } })) ===
      ids.length,
    'all 20 bots to end',
    240_000,
    500,
  );
  const records = createSlotRecords(t.fleet.mongo, t.fleet.fleetId);
  const slots = await waitFor(async () => {
    const all = await records.all();
    return all.every((r) => r.state === 'IDLE') && all;
  }, 'every slot IDLE');
  sampling = false;
  await loop;

  const bots = await t.fleet.models.Bot.find({ _id: { $in: ids } }).lean();
  const figures = {
    completed: bots.filter((b) => b.status === 'ENDED' && b.endReason === 'COMPLETED').length,
    peakHeld: Math.max(...samples.held),
    peakSlots: Math.max(...samples.slots),
    peakRunning: Math.max(...samples.running),
    samples: samples.held.length,
    sharedAssignments: samples.sharedAssignments,
    replacedRunning: coolify.replacedRunning,
    slotsAfter: slots.map((s) => `${s.meetingPlatform}:${s.state}`),
    deployments: coolify.deployments.size,
  };
  process.stdout.write(`coolify 2-process figures: ${JSON.stringify(figures)}\n`);
  const outcome = (b: (typeof bots)[number]) => `${b.status}/${b.endReason}/${b.platform}`;
  for (const bot of bots.filter((b) => outcome(b) !== 'ENDED/COMPLETED/coolify')) {
    const history = await t.fleet.models.BotEvent.find({ botId: bot._id }).sort({ at: 1 }).lean();
    process.stdout.write(
      `bot ${String(bot._id)} ${outcome(bot)}: ${JSON.stringify(history.map((e) => [e.at, e.type, e.message, e.data]))}\n`,
    );
    for (const [i, worker] of workers.entries()) {
      const lines = worker
        .output()
        .split('\n')
        .filter(
          (line) =>
            line.includes(String(bot._id)) || line.includes('"level":"warn"') || line.includes('"level":"error"'),
        );
      process.stdout.write(`worker ${i} on it:\n${lines.join('\n')}\n`);
    }
  }
  expect(bots.map(outcome).filter((s) => s !== 'ENDED/COMPLETED/coolify')).toEqual([]);
  expect(figures.peakHeld).toBeLessThanOrEqual(5);
  expect(figures.peakSlots).toBeLessThanOrEqual(5);
  expect(figures.peakRunning).toBeLessThanOrEqual(5);
  expect(figures.sharedAssignments).toBe(0);
  expect(figures.replacedRunning).toBe(0);
  // Every bot was started exactly once, each on a zoom image.
  const started = new Map<string, number>();
  for (const app of coolify.applications.values())
    expect(app.fields.docker_registry_image_name).toMatch(/meeboter-(zoom|google-meet)-bot$/);
  for (const bot of bots) started.set(String(bot._id), 0);
  const botEvents = await t.fleet.models.BotEvent.find({ botId: { $in: ids }, type: 'attempt.deployed' }).lean();
  for (const event of botEvents) started.set(String(event.botId), (started.get(String(event.botId)) ?? 0) + 1);
  expect([...started.values()].filter((n) => n !== 1)).toEqual([]);
});

it('a worker killed while a slot starts: the next worker follows the same deployment, and the bot runs once', async () => {
  await Promise.all(workers.splice(0).map((w) => w.kill('SIGTERM')));
  const workerEnv = { ...t.env, PORT: '0', LOG_LEVEL: 'info' };
  coolify.stageMs = 2000; // a slow image pull: the deploy is still being followed when its worker dies
  try {
    workers = [spawnFleetProcess('worker', workerEnv)];
    const id = (
      await t.request('POST', '/api/bots', {
        body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '600000' } },
      })
    ).body.id as string;
    const name = `mb-${id}-coolify`;
    const records = createSlotRecords(t.fleet.mongo, t.fleet.fleetId);
    const slot = await waitFor(
      async () => (await records.all()).find((r) => r.deploymentFor === name),
      'the deploy to be started',
    );
    await workers[0].kill('SIGKILL');
    workers.push(spawnFleetProcess('worker', workerEnv));
    // Well before COOLIFY_START_TIMEOUT_MS (10 min): the new worker resumes the start rather than waiting it out.
    const bot = await waitFor(
      async () => {
        const current = (await t.request('GET', `/api/bots/${id}`)).body;
        return current.status === 'IN_CALL' && current.platformIdentifier && current;
      },
      'the bot to run',
      60_000,
    );
    expect(bot.platformIdentifier).toBe(`${name}@${slot._id}`);
    // The start finished in the pool too: a slot left STARTING would read "starting" for good, so a
    // container that died in it would never be found lost.
    await waitFor(
      async () => (await records.all()).find((r) => r._id === slot._id)?.state === 'BUSY',
      'the slot to be BUSY',
      30_000,
    );
    expect(
      [...coolify.deployments.values()].filter(
        (d) =>
          d.application_uuid === slot.applicationUuid && Date.parse(d.created_at) >= slot.lastUsedAt!.getTime() - 1000,
      ),
    ).toHaveLength(1);
    expect(coolify.running().filter((app) => botIdOfEnv(Object.fromEntries(app.envs)) === id)).toHaveLength(1);
    await t.request('DELETE', `/api/bots/${id}`);
  } finally {
    coolify.stageMs = 30;
  }
});
