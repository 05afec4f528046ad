import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import mongoose, { Types } from 'mongoose';
import { createRedis } from '../src/connections';
import { startRedis } from '../src/peers';
import { simHostKeys } from '../src/platforms/sim/sim.platform';
import {
  ApiAnswer,
  baseEnv,
  FleetProcess,
  httpRequest,
  meetings,
  peerUrls,
  RequestOptions,
  sleep,
  spawnFleetProcess,
  testDatabaseUri,
  uniqueName,
  UntypedJson,
  waitFor,
} from './support/fleet';
import { RedisAddress, RedisSentinelSet, startRedisSentinel } from './support/redis-sentinel';

/**
 * The fleet on Redis with Sentinel (a primary, one asynchronous replica, three sentinels), as separate API
 * and worker processes configured only with REDIS_SENTINELS and REDIS_SENTINEL_NAME. With bots in call, the
 * replica stops receiving writes, bots are created (answered 201, written to MongoDB by the flusher), and the
 * primary is SIGKILLed: the sentinels promote the replica, which never had those bots. The fleet follows the
 * failover by itself, puts the lost bots back from MongoDB (recovery queues them again), and every bot, placed
 * before, lost by the failover, or created after it, is placed once and ends normally. The old primary then comes back and is
 * made a replica while the fleet keeps working.
 */
jest.setTimeout(300_000);

const LIMIT = 4;
const IN_CALL_MS = 30_000;
const SHORT_MS = 2_000;
const API_KEY = 'sentinel-test-key-0123456789';

let ha: RedisSentinelSet;
let env: Record<string, string>;
let api: FleetProcess;
let worker: FleetProcess;
let mongo: mongoose.Connection;

beforeAll(async () => {
  ha = await startRedisSentinel();
  env = await baseEnv({
    ...ha.env,
    MONGODB_URI: testDatabaseUri(peerUrls().mongodbUri, uniqueName('meeboter_test_sentinel')),
    PLATFORM_PRIORITY: 'sim',
    SIM_BOT_LIMIT: String(LIMIT),
    // recovery runs once a second, so what the failover lost is rebuilt soon after
    SWEEP_INTERVAL_MS: '1000',
    BOOTSTRAP_API_KEY: API_KEY,
    LOG_LEVEL: 'info',
  });
  expect(env.REDIS_URL).toBeUndefined();
  mongo = await mongoose.createConnection(env.MONGODB_URI).asPromise();
  api = spawnFleetProcess('api', env);
  await waitFor(async () => (await request('GET', '/readyz')).status === 200, 'the API to be ready');
  worker = spawnFleetProcess('worker', env);
  await waitFor(() => worker.output().includes('workers started'), 'the worker to start');
});

afterAll(async () => {
  await Promise.all([api, worker].map((member) => member?.kill('SIGTERM')));
  await mongo?.dropDatabase().catch(() => undefined);
  await mongo?.close();
  await ha?.close();
});

const request = (method: string, route: string, options: RequestOptions = {}): Promise<ApiAnswer> =>
  httpRequest(env.PUBLIC_URL, method, route, { auth: API_KEY, ...options });

const bot = async (id: string): Promise<UntypedJson> => (await request('GET', `/api/bots/${id}`)).body;

/** A bot whose sim bot stays `ms` in the call; retried while the API refuses (a refused create keeps nothing). */
async function createBot(ms: number): Promise<{ id: string; refused: number }> {
  let refused = 0;
  for (;;) {
    const answer = await request('POST', '/api/bots', {
      body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': String(ms) } },
    }).catch(() => ({ status: 0, body: null }));
    if (answer.status === 201) return { id: answer.body.id, refused };
    if (answer.status !== 0 && answer.status !== 503) {
      throw new Error(`POST /api/bots answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    }
    refused++;
    await sleep(100);
  }
}

/**
 * One GET of a bot every 50 ms until stopped: when requests failed (no answer, status 0, or a 5xx), in ms
 * since the start, with their statuses.
 */
function probe(id: string) {
  const failures: Array<{ at: number; status: number }> = [];
  const started = Date.now();
  let running = true;
  const loop = (async () => {
    while (running) {
      const answer = await request('GET', `/api/bots/${id}`).catch(() => ({ status: 0 }));
      if (answer.status === 0 || answer.status >= 500)
        failures.push({ at: Date.now() - started, status: answer.status });
      await sleep(50);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return failures;
    },
  };
}

/** One command to one server of the set, bypassing Sentinel. */
async function on<T>(at: RedisAddress, ...command: Array<string | number>): Promise<T> {
  const client = new IORedis(at.url, { maxRetriesPerRequest: 1 });
  try {
    return (await client.call(String(command[0]), ...command.slice(1))) as T;
  } finally {
    client.disconnect();
  }
}

const keyExists = async (at: RedisAddress, key: string) => (await on<number>(at, 'EXISTS', key)) === 1;
/** How many scripts the server has cached (that EVALSHA runs without their text). */
const cachedScripts = async (at: RedisAddress) =>
  Number(/number_of_cached_scripts:(\d+)/.exec(await on<string>(at, 'INFO', 'memory'))![1]);

it('follows a failover: bots placed before, lost with the replica, and created after are each placed once and end', async () => {
  const prefix = env.REDIS_PREFIX;
  const before: string[] = [];
  for (let i = 0; i < LIMIT; i++) before.push((await createBot(IN_CALL_MS)).id);
  await waitFor(
    async () => (await Promise.all(before.map(bot))).every((b) => b.status === 'IN_CALL'),
    'the bots in call',
  );

  // The replica misses what comes next: bots the API accepts (they wait, the platform is full) and the
  // flusher writes to MongoDB.
  await ha.cutReplication();
  const [replica] = await ha.replicas();
  const lost: string[] = [];
  for (let i = 0; i < 3; i++) lost.push((await createBot(SHORT_MS)).id);
  const objectIds = lost.map((id) => new Types.ObjectId(id));
  await waitFor(
    async () =>
      (await mongo.collection('bots').countDocuments({ _id: { $in: objectIds } })) === lost.length &&
      (await mongo.collection('live_bots').countDocuments({ _id: { $in: objectIds } })) === lost.length,
    'MongoDB to hold the bots created after the cut',
    // the replica stays eligible for promotion only so long after its link went down (10 × down-after-milliseconds)
    15_000,
  );
  const oldPrimary = await ha.primary();
  for (const id of lost) {
    expect(await keyExists(oldPrimary, `${prefix}:bot:${id}`)).toBe(true);
    expect(await keyExists(replica, `${prefix}:bot:${id}`)).toBe(false);
  }
  // Scripts are not replicated: on the new primary every script the fleet runs is sent again with its text.
  expect(await cachedScripts(oldPrimary)).toBeGreaterThan(0);
  expect(await cachedScripts(replica)).toBe(0);

  const probing = probe(before[0]);
  const killedAt = Date.now();
  await ha.killPrimary();
  const newPrimary = await ha.failedOver(oldPrimary);
  const failedOverAt = Date.now();
  expect(newPrimary.port).toBe(replica.port);
  // The promoted replica never had them (checked above, before the kill); the fleet, on reconnecting to another
  // server, puts back what MongoDB holds newer than it (BotRepository.repairLostWrites).
  await waitFor(
    async () => (await Promise.all(lost.map((id) => keyExists(newPrimary, `${prefix}:bot:${id}`)))).every(Boolean),
    'the lost bots put back from MongoDB',
  );

  const after: string[] = [];
  let refused = 0;
  for (let i = 0; i < 3; i++) {
    const created = await createBot(SHORT_MS);
    after.push(created.id);
    refused += created.refused;
  }
  await waitFor(async () => (await bot(before[0])).status === 'IN_CALL', 'the API to answer again', 60_000);
  const failures = await probing.stop();

  // The old primary comes back on its append-only file; the sentinels make it a replica of the new one, and
  // a bot created after that is placed and ends too.
  await ha.restartKilled();
  await waitFor(async () => (await on<string[]>(oldPrimary, 'ROLE'))[0] === 'slave', 'the old primary to be a replica');
  after.push((await createBot(SHORT_MS)).id);

  const all = [...before, ...lost, ...after];
  const ended = await waitFor(
    async () => {
      const bots = await Promise.all(all.map(bot));
      return bots.every((b) => b.status === 'ENDED') ? bots : null;
    },
    'every bot to end',
    180_000,
  ).catch(async (error: Error) => {
    // which bots did not, and what the fleet said of them
    const stuck = (await Promise.all(all.map(bot))).filter((b) => b.status !== 'ENDED');
    const said = [api, worker].flatMap((member) =>
      member
        .output()
        .split('\n')
        .filter((line) => stuck.some((b) => line.includes(b.id))),
    );
    throw new Error(`${error.message}: ${JSON.stringify(stuck)}\n${said.join('\n')}`);
  });
  expect(ended.map((b) => b.endReason)).toEqual(all.map(() => 'COMPLETED'));
  // Numbers stay unique: the counter the replica had was behind MongoDB's and was raised on reconnecting.
  expect(new Set(ended.map((b) => b.number)).size).toBe(all.length);

  // Each bot was deployed once, by the platform's own count (its host lives in the new primary; no bot was
  // deployed between the cut and the kill, the platform being full), and recorded once.
  const current = new IORedis((await ha.primary()).url);
  const keys = simHostKeys(prefix, 'sim');
  const deploys = await current.hgetall(keys.deploys);
  const peak = Number(await current.get(keys.peak));
  current.disconnect();
  for (const id of all) {
    const names = Object.keys(deploys).filter((name) => name.includes(id));
    expect({ id, names, counts: names.map((name) => deploys[name]) }).toEqual({
      id,
      names: [`mb-${id}-sim`],
      counts: ['1'],
    });
    const events = (await request('GET', `/api/bots/${id}/events`)).body.data as UntypedJson[];
    expect({ id, deployed: events.filter((event) => event.type === 'attempt.deployed').length }).toEqual({
      id,
      deployed: 1,
    });
  }
  expect(peak).toBeLessThanOrEqual(LIMIT);
  // and MongoDB holds every end: the flusher went on writing after the failover
  await waitFor(
    async () =>
      (await mongo.collection('bots').countDocuments({
        _id: { $in: all.map((id) => new Types.ObjectId(id)) },
        status: 'ENDED',
      })) === all.length,
    'MongoDB to hold every bot ENDED',
  );

  // refused as unavailable, never as an internal error
  expect(failures.filter((failure) => failure.status !== 503)).toEqual([]);
  const window = failures.length ? failures[failures.length - 1].at - failures[0].at : 0;
  const statuses = [...new Set(failures.map((failure) => failure.status))].sort().join(',');
  process.stdout.write(
    `\nfailover: sentinels named the new primary ${failedOverAt - killedAt} ms after the SIGKILL; ` +
      `GET /api/bots/:id (every 50 ms) failed ${failures.length} times over ${window} ms (statuses ${statuses}); ` +
      `creates refused after the failover: ${refused}\n`,
  );
});

it('with min-replicas-to-write, a primary whose replica is out of reach refuses writes: creates answer 503 and keep nothing', async () => {
  const primary = await ha.primary();
  const stored = () => mongo.collection('bots').countDocuments({});
  const caughtUp = () =>
    waitFor(async () => (await request('GET', '/readyz')).body.unflushedChanges === 0, 'the flusher to catch up');
  await on(primary, 'CONFIG', 'SET', 'min-replicas-to-write', '1', 'min-replicas-max-lag', '10');
  try {
    await waitFor(
      async () => (await on<string>(primary, 'INFO', 'replication')).includes('connected_slaves:1'),
      'a replica',
    );
    await caughtUp();
    const before = await stored();
    await ha.cutReplication();
    await waitFor(
      async () => (await on<string>(primary, 'INFO', 'replication')).includes('connected_slaves:0'),
      'the replica to be cut off',
    );
    const refused = await request('POST', '/api/bots', {
      body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': String(SHORT_MS) } },
    });
    expect({ status: refused.status, code: refused.body.error?.code }).toEqual({ status: 503, code: 'UNAVAILABLE' });

    // Without the setting, the same primary takes writes again, unreplicated.
    await on(primary, 'CONFIG', 'SET', 'min-replicas-to-write', '0');
    const { id } = await createBot(SHORT_MS);
    await caughtUp();
    expect(await stored()).toBe(before + 1);
    expect(await mongo.collection('bots').countDocuments({ _id: new Types.ObjectId(id) })).toBe(1);
  } finally {
    await on(primary, 'CONFIG', 'SET', 'min-replicas-to-write', '0');
  }
});

it('a write refused with READONLY (the server became a replica under the connection) is sent again once it reaches a primary', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-readonly-'));
  const [server, other] = [await startRedis(path.join(dir, 'a')), await startRedis(path.join(dir, 'b'))];
  const at = (url: string): RedisAddress => ({ host: '127.0.0.1', port: Number(new URL(url).port), url });
  const client = createRedis(server.url, 'worker', 'readonly-test');
  let reconnects = 0;
  client.on('reconnecting', () => reconnects++);
  try {
    await client.set('written', 'before');
    await on(at(server.url), 'REPLICAOF', '127.0.0.1', String(new URL(other.url).port));
    const write = client.set('written', 'after');
    await waitFor(() => reconnects > 0, 'the client to reconnect on READONLY', 10_000);
    await on(at(server.url), 'REPLICAOF', 'NO', 'ONE');
    expect(await write).toBe('OK');
    expect(await client.get('written')).toBe('after');
  } finally {
    client.disconnect();
    await Promise.all([server.stop(), other.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
});
