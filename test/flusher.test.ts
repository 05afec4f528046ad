import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { Connection, mongo } from 'mongoose';
import { createMongo, createRedis, RedisRole } from '../src/connections';
import { createLogger, setLogger } from '../src/logger';
import { StartedPeer, startFerretDb, startRedis } from '../src/peers';
import { botKey, BotChanges, changesKey, createBotChanges, partitionOf } from '../src/store/bot-changes';
import { BotRecord, ClaimRecord, createFlusher, eventId, Flusher, leaseKey, RecordId } from '../src/store/flusher';
import { cleanup, peerUrls, sleep, testDatabaseUri, uniqueName, waitFor } from './support/fleet';

/**
 * The flusher against the real peers: what MongoDB ends up holding after batches, a flusher process killed
 * mid-batch and MongoDB going away for a while. Every bot must end up stored once at its latest version, with
 * exactly one event per version.
 */
jest.setTimeout(300_000);

const logs: string[] = [];
setLogger(createLogger({ level: 'info', write: (line) => logs.push(line) }));

interface Peers {
  prefix: string;
  redisUrl: string;
  mongodbUri: string;
  redis: Redis;
  connection: Connection;
  changes: BotChanges;
  bots: mongo.Collection<BotRecord>;
  events: mongo.Collection;
  close(): Promise<void>;
}

const open: Peers[] = [];
afterAll(async () => {
  for (const peers of open) await peers.close();
});

/** Its own Redis prefix and database, on the run's peers or on the given MongoDB server. */
async function peersOfOwn(
  server = peerUrls().mongodbUri,
  partitions = 4,
  redisUrl = peerUrls().redisUrl,
  role: RedisRole = 'worker',
): Promise<Peers> {
  const prefix = uniqueName('mbtest_flusher');
  const mongodbUri = testDatabaseUri(server, uniqueName('meeboter_test_flusher'));
  const redis = createRedis(redisUrl, role, 'test');
  const connection = await createMongo(mongodbUri);
  // as at startup (syncIndexes): partitions writing at once must not race to create them
  await connection.db!.createCollection('bots');
  await connection.db!.createCollection('bot_events');
  const peers: Peers = {
    prefix,
    redisUrl,
    mongodbUri,
    redis,
    connection,
    changes: createBotChanges(redis, prefix, { partitions }),
    bots: connection.db!.collection<BotRecord>('bots'),
    events: connection.db!.collection('bot_events'),
    async close() {
      await cleanup({ redisUrl, mongodbUri }, prefix).catch(() => undefined);
      await connection.close();
      await redis.quit();
    },
  };
  open.push(peers);
  return peers;
}

const flusherOn = (
  peers: Peers,
  extra: {
    bots?: mongo.Collection<BotRecord>;
    live?: mongo.Collection<{ _id: RecordId; createdAt: Date }>;
    batchSize?: number;
    standby?: boolean;
  } = {},
): Flusher =>
  createFlusher({
    redis: peers.redis,
    prefix: peers.prefix,
    bots: peers.bots,
    events: peers.events,
    partitions: peers.changes.partitions,
    leaseMs: 3000,
    ...extra,
  });

interface Step {
  step: number;
  label: string;
  meeting: { platform: string; meetingId: string };
}

/**
 * Takes each bot `steps` versions further (creating it first if need be), each version with one event; the
 * bots concurrently, each bot's versions in order. Answers each bot's latest version.
 */
async function advance(changes: BotChanges, botIds: string[], steps: number): Promise<Map<string, number>> {
  const latest = new Map<string, number>();
  await Promise.all(
    botIds.map(async (botId) => {
      for (let i = 0; i < steps; i++) {
        const result = await changes.update<Step>(botId, (current) => {
          const step = (current?.doc.step ?? 0) + 1;
          return {
            doc: {
              step,
              label: `bot ${botId} at ${step}`,
              meeting: { platform: 'zoom', meetingId: String(100000000 + step) },
            },
            event: { type: step === 1 ? 'created' : 'stepped', step },
          };
        });
        if ('refused' in result) throw new Error(result.refused);
        latest.set(botId, result.version);
      }
    }),
  );
  return latest;
}

const botIdsFor = (count: number) => Array.from({ length: count }, () => new mongo.ObjectId().toHexString());

/** MongoDB holds each bot once at its latest version, and exactly one event for each of its versions. */
async function expectRecorded(peers: Peers, latest: Map<string, number>): Promise<void> {
  const bots = await peers.bots.find({}).toArray();
  expect(bots).toHaveLength(latest.size);
  const wrong = bots.filter(
    (bot) => bot.changeVersion !== latest.get(String(bot._id)) || bot.step !== bot.changeVersion,
  );
  expect(wrong).toEqual([]);

  const events = await peers.events.find({}).toArray();
  const total = [...latest.values()].reduce((sum, version) => sum + version, 0);
  expect(events).toHaveLength(total);
  const versions = new Map<string, number[]>();
  for (const event of events) {
    expect(event._id).toEqual(eventId(event.botId, event.version, event.at));
    expect(event.step).toBe(event.version);
    versions.set(event.botId, [...(versions.get(event.botId) ?? []), event.version]);
  }
  for (const [botId, version] of latest) {
    expect([botId, (versions.get(botId) ?? []).sort((a, b) => a - b)]).toEqual([
      botId,
      Array.from({ length: version }, (_, i) => i + 1),
    ]);
  }
}

/** Nothing left in the streams, nothing delivered and unacknowledged. */
async function expectDrained(peers: Peers): Promise<void> {
  for (let partition = 0; partition < peers.changes.partitions; partition++) {
    const stream = changesKey(peers.prefix, partition);
    expect(await peers.redis.xlen(stream)).toBe(0);
    const [pending] = (await peers.redis.xpending(stream, 'flusher')) as [number];
    expect(pending).toBe(0);
  }
}

it('300 bots created and changed while it runs: each stored once at its latest version, one event per version', async () => {
  const peers = await peersOfOwn();
  const flusher = flusherOn(peers);
  const latest = await advance(peers.changes, botIdsFor(300), 4);
  expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);
  await expectRecorded(peers, latest);
  await expectDrained(peers);
  const status = await flusher.status();
  expect(status.lagging).toBe(false);
  expect(
    status.partitions.every((partition) => partition.held && partition.backlog === 0 && partition.lastFlushAt),
  ).toBe(true);
  await flusher.close();
  // released: nobody holds a partition
  expect(await peers.redis.keys(`${peers.prefix}:flusher-lease:*`)).toEqual([]);
});

it('a batch inserts each new bot once with its latest document, and sends at most 99 updates a command', async () => {
  // one partition, so that one batch holds every bot
  const peers = await peersOfOwn(peerUrls().mongodbUri, 1);
  const inserted: number[] = [];
  const updated: number[] = [];
  const counted = {
    insertMany: (docs: BotRecord[], options: mongo.BulkWriteOptions) => {
      inserted.push(docs.length);
      return peers.bots.insertMany(docs, options);
    },
    bulkWrite: (operations: mongo.AnyBulkWriteOperation<BotRecord>[], options: mongo.BulkWriteOptions) => {
      updated.push(operations.length);
      return peers.bots.bulkWrite(operations, options);
    },
  } as unknown as mongo.Collection<BotRecord>;

  // All made before a flusher runs, so that one batch holds all three versions of every bot.
  const botIds = botIdsFor(300);
  await advance(peers.changes, botIds, 3);
  let flusher = flusherOn(peers, { bots: counted, batchSize: 2000 });
  expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);
  await flusher.close();
  expect(inserted.reduce((sum, n) => sum + n, 0)).toBe(300);
  expect(updated).toEqual([]);

  // One snapshot of each of the 300 stored bots in one batch: 300 updates, split for FerretDB.
  const latest = await advance(peers.changes, botIds, 1);
  flusher = flusherOn(peers, { bots: counted, batchSize: 2000 });
  expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);
  await flusher.close();
  expect(updated).toEqual([99, 99, 99, 3]);
  expect(inserted.reduce((sum, n) => sum + n, 0)).toBe(300);
  await expectRecorded(peers, latest);
});

it('its versioned updates and live-index unmarks find their documents by the _id index, not a scan of the collection', async () => {
  const peers = await peersOfOwn(peerUrls().mongodbUri, 1);
  const live = peers.connection.db!.collection<{ _id: RecordId; createdAt: Date }>('live_bots');
  const filters: Array<{ collection: string; filter: mongo.Document }> = [];
  const bots = {
    insertMany: (docs: BotRecord[], options: mongo.BulkWriteOptions) => peers.bots.insertMany(docs, options),
    bulkWrite: (operations: mongo.AnyBulkWriteOperation<BotRecord>[], options: mongo.BulkWriteOptions) => {
      for (const operation of operations)
        if ('updateOne' in operation) filters.push({ collection: 'bots', filter: operation.updateOne.filter });
      return peers.bots.bulkWrite(operations, options);
    },
  } as unknown as mongo.Collection<BotRecord>;
  const liveIndex = {
    insertMany: (docs: Array<{ _id: RecordId; createdAt: Date }>, options: mongo.BulkWriteOptions) =>
      live.insertMany(docs, options),
    deleteMany: (filter: mongo.Filter<{ _id: RecordId }>) => {
      filters.push({ collection: 'live_bots', filter });
      return live.deleteMany(filter);
    },
  } as unknown as mongo.Collection<{ _id: RecordId; createdAt: Date }>;

  const botIds = botIdsFor(5);
  await advance(peers.changes, botIds, 1);
  await peers.changes.append(botIds.map((botId) => ({ botId, kind: 'live' as const, createdAt: new Date() })));
  let flusher = createFlusher({
    redis: peers.redis,
    prefix: peers.prefix,
    bots,
    events: peers.events,
    live: liveIndex,
    partitions: 1,
    leaseMs: 3000,
  });
  expect(await peers.changes.waitFlushed('now', 60_000)).toBe(true);
  await flusher.close();
  const latest = await advance(peers.changes, botIds, 1);
  await peers.changes.append(botIds.map((botId) => ({ botId, kind: 'unlive' as const })));
  flusher = createFlusher({
    redis: peers.redis,
    prefix: peers.prefix,
    bots,
    events: peers.events,
    live: liveIndex,
    partitions: 1,
    leaseMs: 3000,
  });
  expect(await peers.changes.waitFlushed('now', 60_000)).toBe(true);
  await flusher.close();
  await expectRecorded(peers, latest);
  expect(await live.countDocuments()).toBe(0);
  expect(filters.map(({ collection }) => collection).sort()).toEqual([...Array(5).fill('bots'), 'live_bots']);

  // FerretDB says whether it looked the filter's documents up (pushdown, the SQLite plan) or scanned them all;
  // an update and a delete choose their documents as a find with the same filter does.
  for (const { collection, filter } of filters) {
    const explained = await peers.connection.db!.command({
      explain: { find: collection, filter },
      verbosity: 'queryPlanner',
    });
    expect(explained.serverInfo?.ferretdbVersion).toBeDefined(); // (this check is for the embedded FerretDB)
    expect({ filter, pushdown: explained.filterPushdown, plan: explained.queryPlanner.Plan.join(' ') }).toEqual({
      filter,
      pushdown: true,
      plan: expect.stringMatching(/SEARCH .* USING INDEX .*__id_/),
    });
  }
});

const heldBy = async (flusher: Flusher) =>
  (await flusher.status()).partitions.filter((p) => p.held).map((p) => p.partition);

it('each partition has one writer; a lease taken away stops its writes until the lease is free again', async () => {
  const peers = await peersOfOwn();
  const a = flusherOn(peers);
  const b = flusherOn(peers);
  await waitFor(
    async () => (await heldBy(a)).length + (await heldBy(b)).length === 4,
    'the four partitions to be held',
  );
  const [heldByA, heldByB] = [await heldBy(a), await heldBy(b)];
  expect([...heldByA, ...heldByB].sort()).toEqual([0, 1, 2, 3]);
  const botIds = botIdsFor(100);
  await advance(peers.changes, botIds, 2);
  expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);

  // The one that closes lets go; the other takes its partitions.
  await a.close();
  await waitFor(async () => (await heldBy(b)).length === 4, 'the other flusher to hold every partition');

  // Someone else holds partition 0 now: b stops writing it, and its changes wait in the stream.
  await peers.redis.set(leaseKey(peers.prefix, 0), 'someone else', 'PX', 60_000);
  await waitFor(async () => !(await heldBy(b)).includes(0), 'the flusher to notice its lease is gone');
  const inZero = botIds.filter((botId) => partitionOf(botId, 4) === 0);
  await advance(peers.changes, botIds, 1);
  const status = await b.status();
  expect(status.partitions[0]).toMatchObject({ held: false, backlog: inZero.length });
  expect(await peers.bots.countDocuments({ _id: { $in: inZero }, changeVersion: 3 })).toBe(0);

  await peers.redis.del(leaseKey(peers.prefix, 0));
  expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);
  expect(await heldBy(b)).toEqual([0, 1, 2, 3]);
  await expectRecorded(peers, new Map(botIds.map((botId) => [botId, 3])));
  await b.close();
});

it('a standby flusher leaves every partition to the others, and writes them all once there are none', async () => {
  const peers = await peersOfOwn();
  const standby = flusherOn(peers, { standby: true });
  const writer = flusherOn(peers);
  await waitFor(async () => (await heldBy(writer)).length === 4, 'the writer to hold every partition');
  // two whole leases (3 s each) of chances to take one
  await sleep(6_500);
  expect(await heldBy(standby)).toEqual([]);
  const botIds = botIdsFor(100);
  await advance(peers.changes, botIds, 1);
  expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);

  await writer.close();
  await waitFor(async () => (await heldBy(standby)).length === 4, 'the standby to take every partition');
  await advance(peers.changes, botIds, 1);
  expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);
  await expectRecorded(peers, new Map(botIds.map((botId) => [botId, 2])));
  await standby.close();
});

interface FlusherProcess {
  child: ChildProcess;
  output(): string;
}

function spawnFlusher(peers: Peers): FlusherProcess {
  const script = path.resolve(__dirname, '../dist/test/support/flusher-process.js');
  if (!existsSync(script)) throw new Error(`${script} is missing: run npm run build first`);
  let output = '';
  const child = spawn(process.execPath, [script], {
    env: {
      PATH: process.env.PATH ?? '',
      REDIS_URL: peers.redisUrl,
      MONGODB_URI: peers.mongodbUri,
      PREFIX: peers.prefix,
      LEASE_MS: '3000',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  return { child, output: () => output };
}

/**
 * How many writes MongoDB already holds of the entries a flusher has read and not acknowledged (new bots
 * stored, events stored): more than 0 means it was stopped between writing a batch and acknowledging it.
 */
async function writtenUnacknowledged(peers: Peers): Promise<{ bots: number; events: number }> {
  const written = { bots: 0, events: 0 };
  for (let partition = 0; partition < peers.changes.partitions; partition++) {
    const stream = changesKey(peers.prefix, partition);
    const [count, first, last] = (await peers.redis.xpending(stream, 'flusher')) as [number, string, string];
    if (count === 0) continue;
    // read in order and acknowledged a batch at a time: everything from first to last is unacknowledged
    const entries = (await peers.redis.xrange(stream, first, last)).map(([, fields]) => {
      const f = Object.fromEntries(
        Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]]),
      );
      return { botId: f.bot, version: Number(f.version), kind: f.kind };
    });
    const created = entries.filter((entry) => entry.kind === 'insert').map((entry) => entry.botId);
    written.bots += await peers.bots.countDocuments({ _id: { $in: created } });
    // by bot and version, not by `_id`: this must see a replayed event however its `_id` is made
    const unacknowledged = new Set(entries.map((entry) => `${entry.botId}:${entry.version}`));
    const stored = await peers.events
      .find({ botId: { $in: [...new Set(entries.map((entry) => entry.botId))] } })
      .toArray();
    written.events += stored.filter((event) => unacknowledged.has(`${event.botId}:${event.version}`)).length;
  }
  return written;
}

it('a flusher process killed mid-batch: the next one replays its batch, nothing lost, nothing twice', async () => {
  const peers = await peersOfOwn();
  const first = spawnFlusher(peers);
  await waitFor(() => first.output().includes('flusher started'), 'the first flusher process to start');

  // Bots made before it runs get updates in the same batches as new bots: a batch writes events, then new
  // bots, then updates, and there is room to stop it after the new bots.
  const earlier = botIdsFor(300);
  await advance(peers.changes, earlier, 1);
  const appending = Promise.all([advance(peers.changes, earlier, 4), advance(peers.changes, botIdsFor(300), 5)]);
  // Frozen, then given time for what it had sent to land: if it holds a written, unacknowledged batch now,
  // it still does when killed.
  await waitFor(
    async () => {
      first.child.kill('SIGSTOP');
      await sleep(200);
      const written = await writtenUnacknowledged(peers);
      if (written.bots > 0 && written.events > 0) return true;
      first.child.kill('SIGCONT');
      return false;
    },
    'the flusher to be stopped holding new bots and events it wrote and did not acknowledge',
    120_000,
    50,
  );
  const exited = new Promise((resolve) => first.child.once('exit', resolve));
  first.child.kill('SIGKILL');
  await exited;
  // Dead holding entries written but not acknowledged: their replay must not store a bot or an event twice.
  const replayed = await writtenUnacknowledged(peers);
  expect(replayed.bots).toBeGreaterThan(0);
  expect(replayed.events).toBeGreaterThan(0);
  const latest = new Map([...(await appending).flatMap((map) => [...map])]);

  const second = spawnFlusher(peers);
  try {
    expect(await peers.changes.waitFlushed('now', 180_000)).toBe(true);
    await expectRecorded(peers, latest);
    await expectDrained(peers);
  } finally {
    second.child.kill('SIGTERM');
    await new Promise((resolve) => second.child.once('exit', resolve));
  }
  expect(second.output()).not.toMatch(/"level":"error"/);
});

it('MongoDB away for a while: reports lagging with the error, acknowledges nothing, catches up when it returns', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-flusher-ferretdb-'));
  let ferret = await startFerretDb(dir);
  const port = Number(new URL(ferret.url).port);
  const peers = await peersOfOwn(ferret.url);
  const flusher = flusherOn(peers);
  try {
    const botIds = botIdsFor(100);
    await advance(peers.changes, botIds, 1);
    expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);

    await ferret.stop();
    await advance(peers.changes, botIds, 2);
    const lagging = await waitFor(async () => {
      const status = await flusher.status();
      return status.lagging ? status : null;
    }, 'the flusher to report lagging');
    expect(lagging.partitions.some((partition) => partition.held && partition.lastError && partition.lastErrorAt)).toBe(
      true,
    );
    // Nothing written, so nothing acknowledged or trimmed: all 200 changes made while it was away are there.
    expect(lagging.partitions.reduce((sum, partition) => sum + partition.backlog, 0)).toBe(200);
    expect(await peers.changes.waitFlushed('now', 0)).toBe(false);

    ferret = await startFerretDb(dir, port);
    expect(await peers.changes.waitFlushed('now', 180_000)).toBe(true);
    const status = await flusher.status();
    expect(status.lagging).toBe(false);
    expect(status.partitions.every((partition) => partition.lastError === undefined && partition.backlog === 0)).toBe(
      true,
    );
    await expectRecorded(peers, new Map(botIds.map((botId) => [botId, 3])));
    await expectDrained(peers);
    expect(logs.some((line) => line.includes('flush failed, retrying'))).toBe(true);
  } finally {
    await flusher.close();
    await peers.close();
    open.splice(open.indexOf(peers), 1);
    await ferret.stop();
  }
});

it('Redis restarted under it: it takes its partitions again and writes what comes after; closed while Redis is away, it returns', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-flusher-redis-'));
  let redis: StartedPeer | undefined = await startRedis(dir);
  const port = Number(new URL(redis.url).port);
  // an API process's connection (fails fast, queues nothing), as the fleet gives it
  const peers = await peersOfOwn(undefined, 4, redis.url, 'producer');
  const flusher = flusherOn(peers);
  const stopRedis = async () => {
    await redis?.stop();
    redis = undefined;
    await waitFor(async () => (await peers.redis.ping().catch(() => null)) === null, 'the connection lost');
  };
  const startRedisAgain = async () => {
    redis = await startRedis(dir, port);
    await waitFor(async () => (await peers.redis.ping().catch(() => null)) === 'PONG', 'the connection back');
  };
  try {
    const before = botIdsFor(20);
    await advance(peers.changes, before, 1);
    expect(await peers.changes.waitFlushed('now', 60_000)).toBe(true);

    // An empty Redis (nothing persisted): the leases and streams start again.
    await stopRedis();
    await startRedisAgain();
    const after = botIdsFor(20);
    await advance(peers.changes, after, 2);
    expect(await peers.changes.waitFlushed('now', 60_000)).toBe(true);
    await expectRecorded(
      peers,
      new Map([...before.map((botId) => [botId, 1] as const), ...after.map((botId) => [botId, 2] as const)]),
    );

    // Its blocking reads were on the wire when Redis went; ioredis keeps them to resend after reconnecting,
    // which a closed connection never does. close() must not wait for them.
    await stopRedis();
    await flusher.close();
    await startRedisAgain(); // for the clean-up
  } finally {
    await flusher.close();
    await peers.close();
    open.splice(open.indexOf(peers), 1);
    await redis?.stop();
  }
});

it('a Redis that lost its last writes after they were flushed: the versions it gives again are stored too, events and all', async () => {
  const peers = await peersOfOwn();
  const flusher = flusherOn(peers);
  try {
    const [botId] = botIdsFor(1);
    await advance(peers.changes, [botId], 1);
    // What an append-only file fsynced every second may still hold after the machine went down: version 1.
    const key = botKey(peers.prefix, botId);
    const durable = await peers.redis.hgetall(key);
    await advance(peers.changes, [botId], 1);
    expect(await peers.changes.waitFlushed('now', 60_000)).toBe(true);
    expect(await peers.bots.findOne({ _id: botId })).toMatchObject({ changeVersion: 2, step: 2 });
    await peers.redis.multi().del(key).hset(key, durable).exec();

    // The next change is version 2 again, decided after the first one (Redis's clock went on).
    const again = await peers.changes.update<Step & { note: string }>(botId, (current) => ({
      doc: { ...current!.doc, step: 2, note: 'after the loss' },
      event: { type: 'after-the-loss' },
    }));
    expect(again).toMatchObject({ version: 2 });
    expect(await peers.changes.waitFlushed('now', 60_000)).toBe(true);
    expect(await peers.bots.findOne({ _id: botId })).toMatchObject({ changeVersion: 2, note: 'after the loss' });
    const events = await peers.events.find({ botId }).sort({ seq: 1 }).toArray();
    expect(events.map((event) => [event.version, event.type])).toEqual([
      [1, 'created'],
      [2, 'stepped'],
      [2, 'after-the-loss'],
    ]);
  } finally {
    await flusher.close();
  }
});

it("an undone create's claim is deleted after it is written, and a later claim of its key stays", async () => {
  const peers = await peersOfOwn(undefined, 1); // one stream: the claims, their freeing and later claims in one batch
  const claims = peers.connection.db!.collection<ClaimRecord>('claims');
  const claimOf = (recordId: string, botId: string, createdAt: number) => ({
    key: `${peers.prefix}:claim:${recordId}`,
    value: JSON.stringify({ _id: recordId, botId, createdAt }),
    lifetimeMs: 60_000,
  });
  const [undone, later, alone] = botIdsFor(3);
  const create = async (botId: string, claim: ReturnType<typeof claimOf>) =>
    expect(await peers.changes.apply(botId, 0, { step: 1 }, undefined, 0, [], claim)).toHaveProperty('version', 1);
  // `taken` is claimed by one create that is undone, then by another; `freed` only by one that is undone
  await create(undone, claimOf('taken', undone, 1000));
  await peers.changes.forget(undone, undefined, claimOf('taken', undone, 1000).key);
  await create(later, claimOf('taken', later, 2000));
  await create(alone, claimOf('freed', alone, 3000));
  await peers.changes.forget(alone, undefined, claimOf('freed', alone, 3000).key);
  // freeing a key another bot holds frees nothing
  await peers.changes.forget(undone, undefined, claimOf('taken', undone, 1000).key);
  expect(JSON.parse((await peers.redis.get(claimOf('taken', later, 2000).key))!).botId).toBe(later);

  const flusher = createFlusher({
    redis: peers.redis,
    prefix: peers.prefix,
    bots: peers.bots,
    events: peers.events,
    claims,
    partitions: 1,
    codec: {
      id: (botId) => botId,
      bot: (doc) => doc,
      event: (event) => event,
      claim: ({ createdAt, ...record }) => ({
        ...(record as { _id: string }),
        createdAt: new Date(createdAt as number),
      }),
    },
  });
  expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);
  await flusher.close();
  expect(await claims.find({}).toArray()).toEqual([{ _id: 'taken', botId: later, createdAt: new Date(2000) }]);
});

it('a removal deletes what came before it, in its batch or an earlier one; a bot made again after it stays; an unknown kind is skipped', async () => {
  const peers = await peersOfOwn(undefined, 1); // one stream: everything below in one batch
  const live = peers.connection.db!.collection<{ _id: RecordId; createdAt: Date }>('live_bots');
  const stream = changesKey(peers.prefix, 0);
  const flushAll = async () => {
    const flusher = flusherOn(peers, { live });
    expect(await peers.changes.waitFlushed('now', 120_000)).toBe(true);
    await flusher.close();
  };
  const create = async (botId: string, note: string, since: number) => {
    const created = await peers.changes.apply(botId, 0, { step: 1, note }, { type: 'created', note });
    expect(created).toHaveProperty('version', 1);
    await peers.changes.append([{ botId, kind: 'live', createdAt: new Date(since) }]);
  };
  const [earlier, removed, again, kept] = botIdsFor(4);

  // written in a batch of its own, removed in the next
  await create(earlier, 'earlier', 1000);
  await flushAll();
  expect(await peers.bots.countDocuments({ _id: earlier })).toBe(1);

  await create(removed, 'removed', 2000);
  const stepped = await peers.changes.update<{ step: number }>(removed, (current) => ({
    doc: { ...current!.doc, step: 2 },
    event: { type: 'stepped' },
  }));
  expect(stepped).toHaveProperty('version', 2);
  await peers.changes.append([
    { botId: removed, kind: 'event', event: { _id: new mongo.ObjectId().toHexString(), type: 'log' } },
  ]);
  await create(kept, 'kept', 3000);
  await create(again, 'first', 4000);
  for (const botId of [earlier, removed, again]) await peers.changes.forget(botId);
  await peers.redis.xadd(stream, '*', 'bot', kept, 'kind', 'written-by-a-newer-build');
  // made again under its id after its removal (a retried create)
  await create(again, 'made again', 5000);
  expect(await peers.redis.xlen(stream)).toBe(14);
  await flushAll();

  expect(await peers.redis.xlen(stream)).toBe(0);
  const bots = await peers.bots.find({}, { projection: { note: 1, changeVersion: 1 } }).toArray();
  expect(bots.sort((a, b) => a.note.localeCompare(b.note))).toEqual([
    { _id: kept, note: 'kept', changeVersion: 1 },
    { _id: again, note: 'made again', changeVersion: 1 },
  ]);
  const events = await peers.events.find({}, { projection: { _id: 0, botId: 1, note: 1 } }).toArray();
  expect(events.sort((a, b) => a.note.localeCompare(b.note))).toEqual([
    { botId: kept, note: 'kept' },
    { botId: again, note: 'made again' },
  ]);
  expect(await live.find({}).sort({ createdAt: 1 }).toArray()).toEqual([
    { _id: kept, createdAt: new Date(3000) },
    { _id: again, createdAt: new Date(5000) },
  ]);
  expect(logs.some((line) => line.includes('skipping a stream entry of an unknown kind'))).toBe(true);
});
