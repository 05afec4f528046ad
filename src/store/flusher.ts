import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import { Redis } from 'ioredis';
import { mongo } from 'mongoose';
import { logger } from '../logger';
import { withRetries } from '../retry';
import { changesKey, flushedKey } from './bot-changes';

/**
 * Writes the partition streams of ./bot-changes.ts to MongoDB in batches. Each partition has one writer at a
 * time, whoever holds its lease in Redis; any process may run a flusher, and when the holder dies another
 * takes the partition once the lease expires and first replays what the dead one had read but not
 * acknowledged. Entries are acknowledged (and trimmed) only after MongoDB confirmed the whole batch, so a
 * batch may be written twice but is never lost; every write is therefore idempotent:
 * - a new bot is inserted with its latest document of the batch; a duplicate `_id` (a replay) is ignored and
 *   the document written as an update instead;
 * - an update only applies over an older `changeVersion`, so a replay, or a late write by a holder that lost
 *   its lease, never takes a bot back;
 * - an event's `_id` is derived from (bot, version), so a replayed event is a duplicate and ignored.
 *
 * MongoDB documents: bots `{ ...doc, _id: botId, changeVersion, changedAt }`, events
 * `{ ...event, _id: eventId(botId, version), botId, version, at }`.
 */
export interface Flusher {
  status(): Promise<FlusherStatus>;
  /** Stops reading, lets the batch in hand finish or abandons it unacknowledged, releases the leases. */
  close(): Promise<void>;
}

export interface FlusherStatus {
  /** True while a partition this process holds cannot write to MongoDB: its entries are piling up. */
  lagging: boolean;
  partitions: PartitionStatus[];
}

export interface PartitionStatus {
  partition: number;
  held: boolean;
  /** Entries in the stream not yet written (written ones are trimmed), whoever holds the partition. */
  backlog: number;
  lastError?: string;
  lastErrorAt?: Date;
  lastFlushAt?: Date;
}

/** A bot as the flusher stores it; `_id` is the bot's id. */
export type BotRecord = { _id: string; changeVersion: number; changedAt: Date } & mongo.Document;

export interface FlusherOptions {
  redis: Redis;
  prefix: string;
  bots: mongo.Collection<BotRecord>;
  events: mongo.Collection;
  /** Must match the writers' (createBotChanges). */
  partitions?: number;
  /** Names this process in the leases. */
  owner?: string;
  leaseMs?: number;
  batchSize?: number;
}

/**
 * FerretDB hangs, and with it every later call, on an update command of 100 statements or more; and also,
 * now and then, on several update commands at once with ~160 statements or more between them (measured:
 * 4 × 40 hung once in two runs, 2 × 99 and 4 × 50 hung; inserts alongside one update did not). So commands
 * stay at 99 statements and one flusher sends one update command at a time, for all its partitions.
 */
const MAX_UPDATES_PER_COMMAND = 99;
const MAX_INSERTS_PER_COMMAND = 100;
const GROUP = 'flusher';
const DUPLICATE_KEY = 11000;

export const leaseKey = (prefix: string, partition: number) => `${prefix}:flusher-lease:${partition}`;

/** The `_id` of the event of a bot's version: the same on every replay. */
export function eventId(botId: string, version: number): mongo.ObjectId {
  return new mongo.ObjectId(createHash('sha256').update(`${botId}:${version}`).digest().subarray(0, 12));
}

const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * KEYS: lease, stream. ARGV: owner, group, consumer, count. Reads only while holding the lease, so a holder
 * that lost it (paused past its expiry) cannot take entries out of order from under the new one. Entries
 * delivered but never acknowledged (a dead holder's) come first; each partition has one fixed consumer, so
 * they are all its own. Nothing to read: answers the stream's last id, to block on until a newer one.
 */
const READ = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local function read(from)
  local answer = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], from)
  if answer and #answer[1][2] > 0 then return answer[1][2] end
end
local entries = read('0') or read('>')
if entries then return {1, entries} end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
return {2, last and last[1] or '0-0'}`;

/**
 * KEYS: lease, stream, flushed. ARGV: owner, group, last id, the ids. Entries are read in order and each
 * batch is acknowledged before the next is read, so everything up to the last id is written: trimmed, and
 * recorded as flushed for waitFlushed.
 */
const ACK = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, 4))
local ms, seq = string.match(ARGV[3], '(%d+)-(%d+)')
redis.call('XTRIM', KEYS[2], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
redis.call('SET', KEYS[3], ARGV[3])
return 1`;

interface Entry {
  id: string;
  botId: string;
  version: number;
  kind: 'insert' | 'snapshot';
  at: Date;
  doc: Record<string, unknown>;
  event?: Record<string, unknown>;
}

/** An entry trimmed after delivery (by a holder that lost its lease, once it was written) has no fields. */
type RawEntry = [string, string[] | null];

function parse([id, fields]: RawEntry): Entry | null {
  if (!fields) return null;
  const f: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  return {
    id,
    botId: f.bot,
    version: Number(f.version),
    kind: f.kind as Entry['kind'],
    at: new Date(Number(f.at)),
    doc: JSON.parse(f.doc),
    event: f.event === undefined ? undefined : JSON.parse(f.event),
  };
}

const chunks = <T>(items: T[], size: number): T[][] =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));

/** Inserts in batches; answers the indexes refused as duplicates, and throws on any other failure. */
async function insertAll<T extends mongo.Document>(collection: mongo.Collection<T>, docs: mongo.OptionalUnlessRequiredId<T>[]): Promise<Set<number>> {
  const duplicates = new Set<number>();
  for (const [n, chunk] of chunks(docs, MAX_INSERTS_PER_COMMAND).entries()) {
    try {
      await collection.insertMany(chunk, { ordered: false });
    } catch (error) {
      if (!(error instanceof mongo.MongoBulkWriteError)) throw error;
      const writeErrors = [error.writeErrors].flat();
      if (writeErrors.length === 0 || writeErrors.some((e) => e.code !== DUPLICATE_KEY)) throw error;
      for (const e of writeErrors) duplicates.add(n * MAX_INSERTS_PER_COMMAND + e.index);
    }
  }
  return duplicates;
}

type OneAtATime = <T>(fn: () => Promise<T>) => Promise<T>;

/** Runs each call after every earlier one has settled. */
function oneAtATime(): OneAtATime {
  let tail: Promise<unknown> = Promise.resolve();
  return (fn) => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

/** One batch as few MongoDB commands: each bot's latest document once, each event once. */
async function write(
  bots: mongo.Collection<BotRecord>,
  events: mongo.Collection,
  entries: Entry[],
  updating: OneAtATime,
): Promise<void> {
  const latest = new Map<string, Entry>();
  const created = new Set<string>();
  for (const entry of entries) {
    if (entry.kind === 'insert') created.add(entry.botId);
    if ((latest.get(entry.botId)?.version ?? 0) < entry.version) latest.set(entry.botId, entry);
  }
  // In any order: nothing is acknowledged before all of it is written, and each write is idempotent.
  await insertAll(
    events,
    entries
      .filter((entry) => entry.event !== undefined)
      .map((entry) => ({ ...entry.event, _id: eventId(entry.botId, entry.version), botId: entry.botId, version: entry.version, at: entry.at })),
  );

  // The bot's id is the `_id`, whatever the document says.
  const fields = ({ doc: { _id, ...doc }, version, at }: Entry) => ({ ...doc, changeVersion: version, changedAt: at });

  const inserts = [...created].map((botId) => latest.get(botId)!);
  const replayed = await insertAll(bots, inserts.map((entry) => ({ ...fields(entry), _id: entry.botId })));
  const updates = [
    ...[...latest.values()].filter((entry) => !created.has(entry.botId)),
    ...inserts.filter((_, index) => replayed.has(index)),
  ];
  for (const chunk of chunks(updates, MAX_UPDATES_PER_COMMAND)) {
    await updating(() =>
      bots.bulkWrite(
        chunk.map((entry) => ({
          updateOne: { filter: { _id: entry.botId, changeVersion: { $lt: entry.version } }, update: { $set: fields(entry) } },
        })),
        { ordered: false },
      ),
    );
  }
}

interface PartitionState {
  held: boolean;
  lastError?: string;
  lastErrorAt?: Date;
  lastFlushAt?: Date;
}

export function createFlusher(options: FlusherOptions): Flusher {
  const { redis, prefix, bots, events } = options;
  const partitions = options.partitions ?? 4;
  const owner = options.owner ?? `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const leaseMs = options.leaseMs ?? 10_000;
  const batchSize = options.batchSize ?? 500;
  // Short enough that a lost lease or close() is noticed soon, long enough to cost nothing when idle.
  const blockMs = Math.min(1000, Math.floor(leaseMs / 3));
  const log = logger.child({ role: 'flusher' });
  const states: PartitionState[] = Array.from({ length: partitions }, () => ({ held: false }));
  // Blocking reads hold their connection; each partition has its own, closed on close() to end the wait.
  // Their errors are the main connection's too, which logs them.
  const blocking = Array.from({ length: partitions }, () => redis.duplicate().on('error', () => undefined));
  const updating = oneAtATime();
  let closing = false;
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  const writeBatch = (partition: number, entries: Entry[]) => {
    const state = states[partition];
    return withRetries(
      async () => {
        try {
          await write(bots, events, entries, updating);
        } catch (error) {
          if (!state.lastError) log.warn('flush failed, retrying', { partition, error: String(error) });
          state.lastError = String(error);
          state.lastErrorAt = new Date();
          throw error;
        }
        if (state.lastError) log.info('flush recovered', { partition, failingSince: state.lastErrorAt });
        state.lastError = undefined;
        state.lastFlushAt = new Date();
      },
      // The same batch, until it is written or no longer ours to write (never acknowledged unwritten).
      { attempts: Infinity, isRetryable: () => state.held && !closing, baseMs: 50, maxMs: 2000 },
    );
  };

  /** Reads and writes the partition while the lease is held; returns when it is lost or on close(). */
  const consume = async (partition: number) => {
    const state = states[partition];
    const stream = changesKey(prefix, partition);
    const lease = leaseKey(prefix, partition);
    await redis.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM').catch((error) => {
      if (!String(error).includes('BUSYGROUP')) throw error;
    });
    while (state.held && !closing) {
      const answer = (await redis.eval(READ, 2, lease, stream, owner, GROUP, `partition-${partition}`, batchSize)) as
        | [0]
        | [1, RawEntry[]]
        | [2, string];
      if (answer[0] === 0) {
        // expired or taken before a renewal noticed
        state.held = false;
        return;
      }
      if (answer[0] === 2) {
        await blocking[partition].xread('BLOCK', blockMs, 'STREAMS', stream, answer[1]);
        continue;
      }
      const raw = answer[1];
      const entries = raw.map(parse).filter((entry): entry is Entry => entry !== null);
      await writeBatch(partition, entries);
      const ids = raw.map(([id]) => id);
      await redis.eval(ACK, 3, lease, stream, flushedKey(prefix, partition), owner, GROUP, ids[ids.length - 1], ...ids);
    }
  };

  const run = async (partition: number) => {
    const state = states[partition];
    const lease = leaseKey(prefix, partition);
    while (!closing) {
      try {
        if (!state.held) state.held = (await redis.set(lease, owner, 'PX', leaseMs, 'NX')) === 'OK';
        if (state.held) await consume(partition);
        else await pause(leaseMs / 4);
      } catch (error) {
        if (closing) break;
        log.warn('flusher partition failed', { partition, error: String(error) });
        await pause(500);
      }
    }
  };

  // Renewed well before expiry; a renewal that finds the lease gone (expired, taken) ends consuming.
  const renewer = setInterval(() => {
    states.forEach((state, partition) => {
      if (!state.held) return;
      redis.eval(RENEW, 1, leaseKey(prefix, partition), owner, leaseMs).then(
        (renewed) => {
          if (renewed === 0 && state.held) {
            state.held = false;
            log.warn('flusher lease lost', { partition });
          }
        },
        (error) => log.warn('flusher lease renewal failed', { partition, error: String(error) }),
      );
    });
  }, leaseMs / 3);
  const running = Array.from({ length: partitions }, (_, partition) => run(partition));

  return {
    async status() {
      const batch = redis.pipeline();
      for (let partition = 0; partition < partitions; partition++) batch.xlen(changesKey(prefix, partition));
      const lengths = (await batch.exec()) ?? [];
      return {
        lagging: states.some((state) => state.held && state.lastError !== undefined),
        partitions: states.map((state, partition) => ({
          partition,
          held: state.held,
          backlog: Number(lengths[partition]?.[1] ?? 0),
          lastError: state.lastError,
          lastErrorAt: state.lastErrorAt,
          lastFlushAt: state.lastFlushAt,
        })),
      };
    },
    async close() {
      closing = true;
      clearInterval(renewer);
      blocking.forEach((connection) => connection.disconnect());
      await Promise.all(running);
      await Promise.all(
        states.map(async (state, partition) => {
          if (!state.held) return;
          state.held = false;
          await redis.eval(RELEASE, 1, leaseKey(prefix, partition), owner).catch(() => undefined);
        }),
      );
    },
  };
}
