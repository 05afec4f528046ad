import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';
import mongoose from 'mongoose';
import { botToken } from '../src/auth/bot-token';
import { loadConfig } from '../src/config';
import { startFleet } from '../src/fleet';
import { sweepHeartbeats } from '../workers/sweeps';
import { freePort } from '../src/peers';
import { simHostKeys } from '../src/platforms/sim/sim.platform';
import { deploymentName } from '../src/platforms/platform';
import { occupancyOf, occupyingBotIds } from '../src/placement/occupancy';
import { platformQueueName } from '../queues/queue-names';
import { PlatformQueue } from '../queues/queues';
import { createBotChanges } from '../src/store/bot-changes';
import { BotRecord, createFlusher } from '../src/store/flusher';
import {
  api,
  bareExpressScript,
  collectGarbage,
  cpuSecondsOf,
  benchEnv,
  BenchEnv,
  Proc,
  dropBenchData,
  load,
  Peers,
  percentile,
  sleep,
  startFleetProcess,
  startSimHostProcess,
  startProcess,
  waitAnswering,
  waitReady,
  waitUntil,
} from './support';

/** One measurement of each figure; run.ts repeats them and reports median and spread. */

export interface Sizes {
  seconds: number;
  sweepLarge: number;
  capacityBots: number;
  rssBots: number;
  placeBots: number;
  /** F1: bot documents MongoDB holds before the flusher's snapshots are timed. */
  storedBots: number;
  /** P8: live bots through a full restart, and how often they heartbeat. */
  restartBots: number;
  restartHeartbeatMs: number;
}

const HANG = { 'sim.behavior': 'hang' };
const zoom = { platform: 'zoom', meetingId: '1' };
/** What the benchmark reads of a create's answer. */
type CreatedBot = { id: string; number: number };

/** A fleet's processes; a figure that restarts one puts the new process here, so it is stopped at the end. */
interface FleetProcs {
  api: Proc;
  worker: Proc;
  simHost: Proc;
}

/**
 * An API process, a worker process and a sim host process that runs the sim bots: bots run outside the
 * worker, as containers do in production, though on the same cores.
 */
async function withFleet<T>(
  peers: Peers,
  overrides: Record<string, string>,
  fn: (bench: BenchEnv, redis: IORedis, procs: FleetProcs) => Promise<T>,
  { workerNodeArgs = [] as string[], runBots = true } = {},
) {
  const bench = await benchEnv(peers, { SIM_RUNNER: 'sim-host', ...overrides });
  const procs: FleetProcs = {
    simHost: startSimHostProcess(bench, { runBots }),
    api: startFleetProcess('api', bench),
    worker: startFleetProcess('worker', bench, workerNodeArgs),
  };
  const redis = new IORedis(peers.redisUrl);
  try {
    await waitReady(bench.url);
    return await fn(bench, redis, procs);
  } finally {
    await Promise.all([procs.api.stop(), procs.worker.stop(), procs.simHost.stop()]);
    await redis.quit();
    await dropBenchData(peers, bench);
  }
}

/**
 * Sends `rate` creates per second for `seconds`, returning when each was sent (epoch ms) by bot id. The
 * client first opens its keep-alive connections, as a service calling the API holds them: a connection
 * opened mid-run waits for the busy API to accept it (BENCHMARKS.md, "New connections wait").
 */
async function paceCreates(url: string, rate: number, seconds: number, metadata: Record<string, string>) {
  await Promise.all(Array.from({ length: 32 }, () => api(url, 'GET', '/api/bots?limit=1')));
  const sentAt = new Map<string, number>();
  const pending: Promise<void>[] = [];
  const start = Date.now();
  const total = rate * seconds;
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    const sent = Date.now();
    pending.push(
      api<CreatedBot>(url, 'POST', '/api/bots', { meeting: zoom, metadata }).then(
        (res) => void sentAt.set(res.body.id, sent),
      ),
    );
  }
  await Promise.all(pending);
  return sentAt;
}

/** Creates `n` bots, 50 requests at a time, and answers their ids in creation order. */
async function createBots(url: string, n: number, metadata: Record<string, string>): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, () =>
        api<CreatedBot>(url, 'POST', '/api/bots', { meeting: zoom, metadata }),
      ),
    );
    ids.push(...batch.map((r) => r.body.id));
  }
  return ids;
}

async function createdAtByBot(redis: IORedis, prefix: string, platform = 'sim') {
  const raw = await redis.hgetall(simHostKeys(prefix, platform).createdAt);
  return new Map(Object.entries(raw).map(([name, ms]) => [name.split('-')[1], Number(ms)]));
}

/**
 * P1: create → deploy call latency at a steady `rate` creates/s (run.ts offers half of P2's rate measured in
 * the same run: a fixed rate would exceed a slow machine's capacity and measure its backlog instead).
 */
export async function p1CreateToDeploy(peers: Peers, sizes: Sizes, rate: number) {
  return withFleet(peers, {}, async (bench, redis) => {
    const sentAt = await paceCreates(bench.url, rate, sizes.seconds, HANG);
    const keys = simHostKeys(bench.prefix, 'sim');
    await waitUntil(async () => (await redis.hlen(keys.createdAt)) >= sentAt.size, 'every deploy call');
    const deployed = await createdAtByBot(redis, bench.prefix);
    const latencies = [...sentAt].map(([id, sent]) => deployed.get(id)! - sent);
    return {
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      parts: await p1Parts(bench.url, sentAt, deployed),
    };
  });
}

/** The stretches of P1's path, in order: each is the time from the one before (or from the send). */
export const P1_PARTS = {
  create: 'request sent → bot QUEUED (the API, its Redis steps)',
  dispatch: 'QUEUED → assigned to a platform (the wake-up, waiting for the dispatcher, its run)',
  claim: 'assigned → DEPLOYING (the occupy job waiting for a worker, its claim)',
  deploy: "DEPLOYING → the platform's deploy call (a deploy slot, the call itself)",
} as const;

/**
 * Where P1's time goes: each bot's history (its QUEUED and DEPLOYING status events, stamped by Redis's clock,
 * and the dispatcher's `attempt.assigned`, by the worker's) cut at those points, p50 and p99 of each
 * stretch. Read through the API for up to 300 of the bots, after the measurement.
 */
async function p1Parts(url: string, sentAt: Map<string, number>, deployed: Map<string, number>) {
  const stretches: Record<keyof typeof P1_PARTS, number[]> = { create: [], dispatch: [], claim: [], deploy: [] };
  type Event = { type: string; status?: string; at: string };
  const sample = [...sentAt].slice(0, 300);
  const histories: Event[][] = [];
  for (let i = 0; i < sample.length; i += 20) {
    const answers = await Promise.all(
      sample.slice(i, i + 20).map(([id]) => api<{ data: Event[] }>(url, 'GET', `/api/bots/${id}/events`)),
    );
    histories.push(...answers.map((answer) => answer.body.data));
  }
  for (const [index, [id, sent]] of sample.entries()) {
    const events = histories[index];
    const at = (match: (event: Event) => boolean) => {
      const event = events.find(match);
      if (!event) throw new Error(`bot ${id} has no such event: ${JSON.stringify(events)}`);
      return new Date(event.at).getTime();
    };
    const queued = at((e) => e.type === 'status' && e.status === 'QUEUED');
    const assigned = at((e) => e.type === 'attempt.assigned');
    const deploying = at((e) => e.type === 'status' && e.status === 'DEPLOYING');
    stretches.create.push(queued - sent);
    stretches.dispatch.push(assigned - queued);
    stretches.claim.push(deploying - assigned);
    stretches.deploy.push(deployed.get(id)! - deploying);
  }
  return Object.fromEntries(
    Object.entries(stretches).map(([part, ms]) => [part, { p50: percentile(ms, 50), p99: percentile(ms, 99) }]),
  ) as Record<keyof typeof P1_PARTS, { p50: number; p99: number }>;
}

/** P1 and P5 peer: raw BullMQ add → processor start latency at a steady `rate` jobs/s (P1's rate). */
export async function rawBullmqLatency(peers: Peers, sizes: Sizes, rate: number) {
  const connection = new IORedis(peers.redisUrl, { maxRetriesPerRequest: null });
  const prefix = `mbbench_raw_${Date.now()}`;
  const queue = new Queue('raw', { connection, prefix });
  const latencies: number[] = [];
  const workerConnection = new IORedis(peers.redisUrl, { maxRetriesPerRequest: null });
  // Same process, so a sub-millisecond clock: the peer's latency is often under 1 ms.
  const worker = new Worker<{ t: number }>(
    'raw',
    (job) => {
      latencies.push(performance.now() - job.data.t);
      return Promise.resolve();
    },
    {
      connection: workerConnection,
      prefix,
      concurrency: 50,
    },
  );
  await worker.waitUntilReady();
  const total = Math.round(rate * sizes.seconds);
  const start = Date.now();
  for (let i = 0; i < total; i++) {
    const wait = start + (i * 1000) / rate - Date.now();
    if (wait > 0) await sleep(wait);
    await queue.add('j', { t: performance.now() }, { removeOnComplete: true });
  }
  await waitUntil(() => Promise.resolve(latencies.length >= total), 'raw jobs');
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await connection.quit();
  await workerConnection.quit();
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/**
 * P2: sustained creates/s end to end (API, worker and sim host, one process each) until the deploy call.
 * Also the CPU each process spent per created bot over the same span, the peers' too where the bench
 * started them (the flusher's MongoDB writes that are still behind at the last deploy call are not in it):
 * what a faster design has to cut. `runBots: false` measures the create path alone: the containers' bots
 * never call the fleet (with them, each makes four requests in the span: config, a heartbeat, two reports).
 */
export async function p2Throughput(peers: Peers, sizes: Sizes, { runBots = true } = {}) {
  return withFleet(
    peers,
    {},
    async (bench, redis, procs) => {
      const cpu = cpuReader(peers, procs);
      const before = cpu();
      const start = Date.now();
      const result = await load({
        url: `${bench.url}/api/bots`,
        headers: { authorization: `Bearer ${bench.env.BOOTSTRAP_API_KEY}` },
        body: JSON.stringify({ meeting: zoom, metadata: HANG }),
        seconds: sizes.seconds,
      });
      const keys = simHostKeys(bench.prefix, 'sim');
      await waitUntil(async () => (await redis.hlen(keys.createdAt)) >= result.ok, 'every deploy call');
      const after = cpu();
      const last = Math.max(...(await createdAtByBot(redis, bench.prefix)).values());
      return {
        perSecond: result.ok / ((last - start) / 1000),
        apiPerSecond: result.requestsPerSecond,
        errors: result.errors,
        cpuMsPerBot: cpuMsPerBot(before, after, result.ok),
      };
    },
    { runBots },
  );
}

/** Peer of P2 and P3: a bare Express JSON POST handler under the same load. */
export async function bareExpress(sizes: Sizes) {
  const port = await freePort();
  const server = startProcess(bareExpressScript(), [], { PORT: String(port) });
  try {
    await waitAnswering(port, 'bare express');
    const result = await load({
      url: `http://127.0.0.1:${port}/api/bots`,
      body: JSON.stringify({ meeting: zoom }),
      seconds: sizes.seconds,
    });
    return { perSecond: result.requestsPerSecond };
  } finally {
    await server.stop();
  }
}

/** The floor of P3 tRPC: tRPC's Express adapter with superjson and a heartbeat that does nothing (bare-express.ts). */
export async function bareTrpc(sizes: Sizes) {
  const port = await freePort();
  const server = startProcess(bareExpressScript(), [], { PORT: String(port), TRPC: 'true' });
  try {
    await waitAnswering(port, 'bare tRPC');
    const result = await load({
      url: `http://127.0.0.1:${port}/api/trpc/bots.sendHeartbeat?batch=1`,
      body: JSON.stringify({ 0: { json: { id: '1' } } }),
      seconds: sizes.seconds,
    });
    return { perSecond: result.requestsPerSecond };
  } finally {
    await server.stop();
  }
}

/**
 * The bare pipeline's API and worker processes (bench/bare-pipeline.ts), ready, for `fn`; stopped, and
 * their data dropped, after.
 */
async function withBarePipeline<T>(
  peers: Peers,
  options: { protocol: boolean; stamp?: boolean },
  fn: (pipeline: {
    port: number;
    prefix: string;
    server: Proc;
    worker: Proc;
    connection: IORedis;
    queue: Queue;
    floorStats: () => Promise<{ inCall: number }>;
  }) => Promise<T>,
): Promise<T> {
  const port = await freePort();
  const prefix = `mbbench_pipeline_${Date.now()}`;
  const db = new URL(peers.mongodbUri);
  db.pathname = `/${prefix}`;
  const env = {
    REDIS_URL: peers.redisUrl,
    MONGODB_URI: db.toString(),
    PREFIX: prefix,
    PORT: String(port),
    PROTOCOL: String(options.protocol),
    STAMP: String(options.stamp ?? false),
  };
  const script = path.resolve(__dirname, 'bare-pipeline.js');
  const server = startProcess(script, ['api'], env);
  const worker = startProcess(script, ['worker'], env);
  const connection = new IORedis(peers.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('bare', { connection, prefix });
  const floorStats = async () =>
    (await api<{ inCall: number }>(`http://127.0.0.1:${port}`, 'GET', '/floor/stats')).body;
  try {
    // The probe's POST added one job (and, with the protocol, one bot): once it ran, the worker is up, and
    // it counts beside the load's.
    await waitAnswering(port, 'bare pipeline');
    await waitUntil(async () => (await queue.getCompletedCount()) >= 1, 'bare pipeline worker');
    if (options.protocol) await waitUntil(async () => (await floorStats()).inCall >= 1, 'bare pipeline bot');
    return await fn({ port, prefix, server, worker, connection, queue, floorStats });
  } finally {
    await Promise.all([server.stop(), worker.stop()]);
    await queue.obliterate({ force: true });
    await queue.close();
    await connection.del(`${prefix}:floor`, `${prefix}:floor:started`);
    await connection.quit();
    const mongo = await mongoose.createConnection(env.MONGODB_URI).asPromise();
    await mongo.dropDatabase().catch(() => undefined);
    await mongo.close();
  }
}

/**
 * Beside P2, the floor of this stack on this machine: a bare Express handler that adds a BullMQ job, and a
 * worker process whose processor does nothing (bench/bare-pipeline.ts), counted until the last job ran.
 * `protocol`: each bot also makes the bot protocol's four calls and is recorded in MongoDB with batched
 * inserts (see bare-pipeline.ts), counted until every bot reported IN_CALL and every record was written.
 */
export async function barePipeline(peers: Peers, sizes: Sizes, { protocol = false } = {}) {
  return withBarePipeline(
    peers,
    { protocol },
    async ({ port, prefix, server, worker, connection, queue, floorStats }) => {
      const cpu = cpuReader(peers, { api: server, worker });
      const before = cpu();
      const start = Date.now();
      const result = await load({
        url: `http://127.0.0.1:${port}/api/bots`,
        body: JSON.stringify({ meeting: zoom, metadata: HANG }),
        seconds: sizes.seconds,
      });
      const bots = result.ok + 1;
      await waitUntil(async () => (await queue.getCompletedCount()) >= bots, 'every bare pipeline job', undefined, 20);
      if (!protocol) {
        const [last] = await queue.getCompleted(0, 0);
        return {
          perSecond: result.ok / ((last.finishedOn! - start) / 1000),
          cpuMsPerBot: cpuMsPerBot(before, cpu(), bots),
        };
      }
      await waitUntil(
        async () => (await floorStats()).inCall >= bots,
        'every bare pipeline bot in its call',
        undefined,
        20,
      );
      // Five records a bot: the bot document and its four status events.
      await waitUntil(
        async () => Number(await connection.hget(`${prefix}:floor`, 'recorded')) >= 5 * bots,
        'every bare pipeline record',
        undefined,
        20,
      );
      // Recording ends last (the bots' last reports are recorded after they are answered): seen within 20 ms.
      return { perSecond: result.ok / ((Date.now() - start) / 1000), cpuMsPerBot: cpuMsPerBot(before, cpu(), bots) };
    },
  );
}

/**
 * P1's floor: P1 (creates at a steady `rate`, each timed from its send to its job's start, the floor's deploy
 * call) against the P2 protocol floor: the same Express, BullMQ and MongoDB driver, the bots making the
 * protocol's four calls and recorded by batched inserts, with none of the fleet's own work. What any design's
 * create → deploy call latency costs at that rate on this machine, beside raw BullMQ's single hop.
 */
export async function p1ProtocolFloor(peers: Peers, sizes: Sizes, rate: number) {
  return withBarePipeline(peers, { protocol: true, stamp: true }, async ({ port, prefix, connection }) => {
    const sentAt = await paceCreates(`http://127.0.0.1:${port}`, rate, sizes.seconds, HANG);
    const key = `${prefix}:floor:started`;
    await waitUntil(async () => (await connection.hlen(key)) >= sentAt.size, 'every floor job to start');
    const started = await connection.hgetall(key);
    const latencies = [...sentAt].map(([id, sent]) => Number(started[id]) - sent);
    return { p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
  });
}

/**
 * F1: how fast the flusher records bot changes in MongoDB once `stored` bots are there (its bot documents
 * only grow: every bot ever created stays). 2,000 of the stored bots take one version each (a snapshot and
 * its event); the figure is snapshots written per second by one flusher of 4 partitions.
 */
export async function flusherSnapshots(peers: Peers, stored: number) {
  const bench: BenchEnv = await benchEnv(peers, {});
  const connection = await mongoose.createConnection(bench.env.MONGODB_URI).asPromise();
  const redis = new IORedis(peers.redisUrl);
  const changes = createBotChanges(redis, bench.prefix);
  const flusherOf = () =>
    createFlusher({
      redis,
      prefix: bench.prefix,
      bots: connection.db!.collection<BotRecord>('bots'),
      events: connection.db!.collection('bot_events'),
    });
  const step = (botId: string) =>
    changes.update<Record<string, unknown> & { step: number }>(botId, (current) => {
      const next = (current?.doc.step ?? 0) + 1;
      return {
        doc: {
          status: next === 1 ? 'QUEUED' : 'IN_CALL',
          step: next,
          meeting: zoom,
          metadata: { purpose: 'bench' },
          platform: 'sim',
          platformIdentifier: `sim-${botId}`,
        },
        event: { type: 'status', step: next },
      };
    });
  const everyOnce = async (botIds: string[]) => {
    for (let i = 0; i < botIds.length; i += 500) await Promise.all(botIds.slice(i, i + 500).map(step));
  };
  try {
    const botIds = Array.from({ length: stored }, () => new mongoose.mongo.ObjectId().toHexString());
    await everyOnce(botIds);
    let flusher = flusherOf();
    if (!(await changes.waitFlushed('now', 600_000))) throw new Error('the stored bots were not flushed');
    await flusher.close();
    const changed = botIds.slice(0, 2_000);
    await everyOnce(changed);
    const start = Date.now();
    flusher = flusherOf();
    if (!(await changes.waitFlushed('now', 600_000))) throw new Error('the snapshots were not flushed');
    const seconds = (Date.now() - start) / 1000;
    await flusher.close();
    return { perSecond: changed.length / seconds };
  } finally {
    await connection.close();
    await redis.quit();
    await dropBenchData(peers, bench);
  }
}

/** P3: heartbeats/s with per-bot auth, API process alone. */
export async function p3Heartbeats(peers: Peers, sizes: Sizes) {
  const bench = await benchEnv(peers, {});
  const apiProc = startFleetProcess('api', bench);
  try {
    await waitReady(bench.url);
    const bot = await api<CreatedBot>(bench.url, 'POST', '/api/bots', { meeting: zoom });
    const result = await load({
      url: `${bench.url}/api/bots/${bot.body.id}/heartbeat`,
      headers: { authorization: `Bearer ${botToken(bench.env.BOT_TOKEN_SECRET, bot.body.id)}` },
      body: '{}',
      seconds: sizes.seconds,
    });
    return { perSecond: result.requestsPerSecond, errors: result.errors };
  } finally {
    await apiProc.stop();
    await dropBenchData(peers, bench);
  }
}

/**
 * P3 tRPC: the same through the upstream bot protocol at /api/trpc, as the bot images send it: one
 * `bots.sendHeartbeat` a request (tRPC batch link, superjson, `X-Milo-Token` with the bot's own token), or a
 * `bots.logs.stream` of 10 entries (the images stream every 2 s).
 */
export async function p3Trpc(peers: Peers, sizes: Sizes, procedure: 'heartbeat' | 'logs') {
  const bench = await benchEnv(peers, {});
  const apiProc = startFleetProcess('api', bench);
  try {
    await waitReady(bench.url);
    const bot = await api<CreatedBot>(bench.url, 'POST', '/api/bots', { meeting: zoom });
    const number = bot.body.number;
    const entries = Array.from({ length: 10 }, (_, i) => ({
      id: `e${i}`,
      botId: number,
      timestamp: new Date().toISOString(),
      level: 'INFO',
      message: `bench line ${i}`,
    }));
    const call =
      procedure === 'heartbeat'
        ? { path: 'bots.sendHeartbeat', input: { json: { id: String(number) } } }
        : {
            path: 'bots.logs.stream',
            input: {
              json: { botId: String(number), entries },
              meta: { values: Object.fromEntries(entries.map((_, i) => [`entries.${i}.timestamp`, ['Date']])), v: 1 },
            },
          };
    const result = await load({
      url: `${bench.url}/api/trpc/${call.path}?batch=1`,
      headers: { 'x-milo-token': botToken(bench.env.BOT_TOKEN_SECRET, bot.body.id, number) },
      body: JSON.stringify({ 0: call.input }),
      seconds: sizes.seconds,
    });
    return { perSecond: result.requestsPerSecond, errors: result.errors };
  } finally {
    await apiProc.stop();
    await dropBenchData(peers, bench);
  }
}

/** P4: heartbeat-expiry sweep time with `live` bots of which 100 expired. */
export async function p4Sweep(peers: Peers, live: number) {
  const bench = await benchEnv(peers, {});
  const config = loadConfig(bench.env);
  const fleet = await startFleet(
    config,
    { redis: peers.redisUrl, mongodbUri: bench.env.MONGODB_URI },
    { api: false, workers: false },
  );
  try {
    const now = Date.now();
    const expired: string[] = [];
    for (let i = 0; i < 100; i++) {
      const created = await fleet.bots.create('bench', {
        meeting: zoom as never,
        displayName: 'b',
        recording: false,
        metadata: {},
      });
      await fleet.repo.update(created.bot.id, { status: 'IN_CALL' });
      expired.push(created.bot.id);
    }
    const key = `${bench.prefix}:heartbeats`;
    // 1,000 members a ZADD, 100 ZADDs a round trip: a million live bots are in place in seconds
    for (let i = 0; i < live; i += 100_000) {
      const batch = fleet.redis.pipeline();
      for (let j = i; j < Math.min(live, i + 100_000); j += 1_000) {
        const members = Array.from({ length: Math.min(1_000, live - j) }, (_, k) => [now, `live-${j + k}`]).flat();
        batch.zadd(key, ...members);
      }
      await batch.exec();
    }
    for (const id of expired) await fleet.redis.zadd(key, now - 10 * config.heartbeatTimeoutMs, id);
    if ((await fleet.redis.zcard(key)) !== live + 100) throw new Error(`${key} holds the wrong number of bots`);
    const started = process.hrtime.bigint();
    const result = await sweepHeartbeats(
      {
        liveState: fleet.liveState,
        repo: fleet.repo,
        lifecycle: fleet.lifecycle,
        outbox: fleet.outbox,
        heartbeatTimeoutMs: config.heartbeatTimeoutMs,
        deployTimeoutMs: 1,
      },
      now,
    );
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (result.acted !== 100) throw new Error(`sweep acted on ${result.acted}, expected 100`);
    return { ms };
  } finally {
    await fleet.shutdown.close();
    await dropBenchData(peers, bench);
  }
}

/** P5: capacity freed (container stopped) → next queued bot's deploy call, on a platform with limit 1. */
export async function p5CapacityToDeploy(peers: Peers, sizes: Sizes) {
  return withFleet(peers, { SIM_BOT_LIMIT: '1' }, async (bench, redis) => {
    const ids: string[] = [];
    for (let i = 0; i < sizes.capacityBots; i++) {
      ids.push(
        (await api<CreatedBot>(bench.url, 'POST', '/api/bots', { meeting: zoom, metadata: { 'sim.durationMs': '20' } }))
          .body.id,
      );
    }
    const keys = simHostKeys(bench.prefix, 'sim');
    await waitUntil(async () => (await redis.hlen(keys.stoppedAt)) >= ids.length, 'every bot to end');
    const created = Object.entries(await redis.hgetall(keys.createdAt)).sort((a, b) => Number(a[1]) - Number(b[1]));
    const stopped = await redis.hgetall(keys.stoppedAt);
    const latencies = created.slice(1).map(([, at], i) => Number(at) - Number(stopped[created[i][0]]));
    return { p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
  });
}

/**
 * P6: worker RSS per live sim bot. Read after a full garbage collection, before and after, so it counts what
 * holding the bots retains; `uncollectedBytesPerBot` is the same 2 s after the last bot went live without one,
 * which adds the garbage of creating them that V8 has not collected yet (its memory reducer returns it once
 * the worker is quiet, after about a minute here).
 */
export async function p6RssPerBot(peers: Peers, sizes: Sizes) {
  const inspectPort = await freePort();
  // The sim bots run in the sim host process, so the worker's growth is what holding costs it.
  return withFleet(
    peers,
    {},
    async (bench, redis, procs) => {
      await sleep(1000);
      await collectGarbage(inspectPort);
      const before = procs.worker.rssKb();
      const keys = simHostKeys(bench.prefix, 'sim');
      for (let i = 0; i < sizes.rssBots; i += 50) {
        await Promise.all(
          Array.from({ length: Math.min(50, sizes.rssBots - i) }, () =>
            api(bench.url, 'POST', '/api/bots', { meeting: zoom, metadata: HANG }),
          ),
        );
      }
      await waitUntil(async () => (await redis.hlen(keys.containers)) >= sizes.rssBots, 'every bot to be live');
      await sleep(2000);
      const uncollected = procs.worker.rssKb();
      await collectGarbage(inspectPort);
      const after = procs.worker.rssKb();
      const perBot = (kb: number) => ((kb - before) * 1024) / sizes.rssBots;
      return {
        bytesPerBot: perBot(after),
        uncollectedBytesPerBot: perBot(uncollected),
        rssMb: after / 1024,
        simHostRssMb: procs.simHost.rssKb() / 1024,
      };
    },
    { workerNodeArgs: [`--inspect=127.0.0.1:${inspectPort}`] },
  );
}

export type ProcessCpu = Record<'api' | 'worker' | 'simHost' | 'redis' | 'mongodb' | 'load', number>;

/**
 * CPU seconds used so far by each fleet process, each peer the bench started and the bench's own process,
 * which generates the load (NaN for one it did not start).
 */
function cpuReader(peers: Peers, procs: { api: Proc; worker: Proc; simHost?: Proc }): () => ProcessCpu {
  const peerCpu = (pid: number | undefined) => (pid === undefined ? NaN : cpuSecondsOf(pid));
  return () => {
    const load = process.cpuUsage();
    return {
      api: procs.api.cpuSeconds(),
      worker: procs.worker.cpuSeconds(),
      simHost: procs.simHost?.cpuSeconds() ?? NaN,
      redis: peerCpu(peers.pids.redis),
      mongodb: peerCpu(peers.pids.mongodb),
      load: (load.user + load.system) / 1e6,
    };
  };
}

function cpuMsPerBot(before: ProcessCpu, after: ProcessCpu, bots: number): ProcessCpu {
  const per = (name: keyof ProcessCpu) => ((after[name] - before[name]) * 1000) / bots;
  return {
    api: per('api'),
    worker: per('worker'),
    simHost: per('simHost'),
    redis: per('redis'),
    mongodb: per('mongodb'),
    load: per('load'),
  };
}

/** P7: placing N queued bots once N occupying bots are cancelled at once. */
export async function p7PlaceQueued(peers: Peers, sizes: Sizes) {
  const n = sizes.placeBots;
  return withFleet(peers, { SIM_BOT_LIMIT: String(n) }, async (bench, redis, procs) => {
    const cpu = cpuReader(peers, procs);
    const create = () => createBots(bench.url, n, HANG);
    const keys = simHostKeys(bench.prefix, 'sim');
    const holders = await create();
    await waitUntil(async () => (await redis.hlen(keys.createdAt)) >= n, 'holders to be deployed');
    const queued = await create();
    const before = cpu();
    const start = Date.now();
    for (let i = 0; i < holders.length; i += 50) {
      await Promise.all(holders.slice(i, i + 50).map((id) => api(bench.url, 'DELETE', `/api/bots/${id}`)));
    }
    await waitUntil(async () => (await redis.hlen(keys.createdAt)) >= 2 * n, 'queued bots to be deployed');
    const after = cpu();
    const deployed = await createdAtByBot(redis, bench.prefix);
    const last = Math.max(...queued.map((id) => deployed.get(id)!));
    return { perSecond: n / ((last - start) / 1000), cpuMsPerBot: cpuMsPerBot(before, after, n) };
  });
}

/** Creates a bot as soon as the API answers (a process still starting refuses the connection), within `timeoutMs`. */
async function createWhenAnswering(url: string, metadata: Record<string, string>, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const created = await api<CreatedBot>(url, 'POST', '/api/bots', { meeting: zoom, metadata });
      if (created.status === 201) return created.body.id;
    } catch {
      // not listening yet, or a keep-alive connection to the killed process
    }
    await sleep(20);
  }
  throw new Error(`benchmark timed out waiting for the API at ${url} to create a bot`);
}

/**
 * P8: a full restart with `restartBots` live bots. The bots stay in their call and heartbeat every
 * `restartHeartbeatMs`; once every one is held (in its call, its occupy job parked), the API and worker
 * processes are SIGKILLed together and started again at t0. The sim host, Redis and MongoDB keep
 * running, as a platform's containers and the data stores outlive the fleet's processes. From t0:
 * - `placeAgainS`: a probe bot, created as soon as the API answers, reaches its deploy call;
 * - `allHeldS`: every one of the bots is held again: a worker of the restarted fleet serves the platform's
 *   queue, the bot's occupy job is in a holding state (checked throughout, so none lost it meanwhile), and
 *   the restarted API accepted a heartbeat from the bot (BENCHMARKS.md says why that, and what it bounds);
 * - `fleetBackS`: the API created the probe and the restarted worker serves the platform's queue.
 * `createSeconds`: the same run's creates of the bots, from the first create to the last deploy call.
 */
export async function p8FullRestart(peers: Peers, sizes: Sizes) {
  const n = sizes.restartBots;
  const inCallForAnHour = { 'sim.durationMs': String(3_600_000) };
  const overrides = { SIM_BOT_LIMIT: String(n + 1), HEARTBEAT_INTERVAL_MS: String(sizes.restartHeartbeatMs) };
  return withFleet(peers, overrides, async (bench, redis, procs) => {
    const keys = simHostKeys(bench.prefix, 'sim');
    const heartbeats = `${bench.prefix}:heartbeats`;
    const connection = new IORedis(peers.redisUrl, { maxRetriesPerRequest: null });
    const occupyQueue: PlatformQueue = new Queue(platformQueueName('sim'), { connection, prefix: bench.prefix });
    try {
      const start = Date.now();
      const ids = await createBots(bench.url, n, inCallForAnHour);
      await waitUntil(async () => (await redis.hlen(keys.createdAt)) >= n, 'every deploy call');
      const deployed = await createdAtByBot(redis, bench.prefix);
      const createSeconds = (Math.max(...ids.map((id) => deployed.get(id)!)) - start) / 1000;
      const changes = createBotChanges(redis, bench.prefix);
      const allInCall = async () =>
        (await changes.readMany<{ status: string }>(ids)).every((bot) => bot?.status === 'IN_CALL');
      await waitUntil(
        async () => {
          const jobs = await occupyQueue.getJobCounts('delayed', 'active', 'waiting');
          return jobs.delayed === n && jobs.active === 0 && jobs.waiting === 0 && (await allInCall());
        },
        'every bot to be in its call, its occupy job parked',
        300_000,
        500,
      );
      if ((await occupyQueue.getWorkersCount()) === 0) throw new Error('no worker serves the platform queue');

      await Promise.all([procs.api.kill(), procs.worker.kill()]);
      // Redis sees the dead worker's connections closed: from here on, a worker serving the queue is a new one.
      await waitUntil(
        async () => (await occupyQueue.getWorkersCount()) === 0,
        'the killed worker to be gone',
        10_000,
        10,
      );
      const t0 = Date.now();
      procs.api = startFleetProcess('api', bench);
      procs.worker = startFleetProcess('worker', bench);

      const stillHeld = async () => {
        const held = (await occupancyOf(occupyQueue)).occupied;
        if (held < n) throw new Error(`only ${held} of ${n} bots are held after the restart`);
      };
      const workerBack = waitUntil(
        async () => (await occupyQueue.getWorkersCount()) > 0,
        'the restarted worker to serve the platform queue',
        120_000,
        20,
      ).then(() => Date.now());
      workerBack.catch(() => undefined); // awaited below
      const probe = await createWhenAnswering(bench.url, HANG);
      const probeCreated = Date.now();
      const placed = waitUntil(
        async () => (await redis.hget(keys.createdAt, deploymentName(probe, 'sim'))) !== null,
        'the probe bot to be placed',
        120_000,
        20,
      );
      placed.catch(() => undefined); // awaited below
      // Every bot heard from since t0 (the probe too, once it started): one count a poll, then each bot checked.
      let heardAt = 0;
      await waitUntil(
        async () => {
          await stillHeld();
          const probeHeard = Number((await redis.zscore(heartbeats, probe)) ?? 0) >= t0 ? 1 : 0;
          if ((await redis.zcount(heartbeats, t0, '+inf')) - probeHeard < n) return false;
          heardAt = Date.now();
          return true;
        },
        'every bot to heartbeat after the restart',
        300_000,
        100,
      );
      const scores = await redis.zmscore(heartbeats, ...ids);
      if (scores.some((score) => score === null || Number(score) < t0)) throw new Error('a bot was not heard after t0');
      const holding = new Set(await occupyingBotIds(occupyQueue));
      if (!ids.every((id) => holding.has(id))) throw new Error('a bot is not held after the restart');
      if (!(await allInCall())) throw new Error('a bot left its call during the restart');
      await placed;
      const placedAt = Number(await redis.hget(keys.createdAt, deploymentName(probe, 'sim')));
      const workerServing = await workerBack;
      return {
        placeAgainS: (placedAt - t0) / 1000,
        allHeldS: (Math.max(heardAt, workerServing) - t0) / 1000,
        fleetBackS: (Math.max(probeCreated, workerServing) - t0) / 1000,
        createSeconds,
        createsPerSecond: n / createSeconds,
      };
    } finally {
      await occupyQueue.close();
      await connection.quit();
    }
  });
}
