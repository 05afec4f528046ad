import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import { Redis } from 'ioredis';
import { mongo } from 'mongoose';
import { logger } from '../logger';
import { withRetries } from '../retry';
import { changesKey, flushedKey, StreamEntry } from './bot-changes';
import { RedisScript, RELEASE_LOCK, RENEW_LOCK } from '../redis-script';

/**
 * Writes the partition streams of ./bot-changes.ts to MongoDB in batches. Each partition has one writer at a
 * time, whoever holds its lease in Redis; any process may run a flusher, and when the holder dies another
 * takes the partition once the lease expires and first replays what the dead one had read but not
 * acknowledged. Entries are acknowledged (and trimmed) only after MongoDB confirmed the whole batch, so a
 * batch may be written twice but is never lost; every write is therefore idempotent:
 * - a new bot is inserted with its latest document of the batch; a duplicate `_id` (a replay) is ignored and
 *   the document written as an update instead;
 * - an update only applies over an older `changeVersion` (or the same one changed earlier by Redis's clock:
 *   a Redis that lost its last writes gives their versions again), so a replay, or a late write by a holder
 *   that lost its lease, never takes a bot back;
 * - an event's `_id` is derived from (bot, version, time of the change), or chosen by its writer before it
 *   entered the stream, so a replayed event is a duplicate and ignored;
 * - a live-index mark is an insert whose duplicate is ignored, an unmark a delete;
 * - a claim (an Idempotency-Key, bot-changes.ts `Claim`) is an insert; a duplicate replaces only an older
 *   record of its key (one that expired and was claimed again);
 * - a removal (an undone create, after everything of its bot in the stream) deletes the bot's record, its
 *   events and its live-index mark, and the record of the claim it freed, if any, only while that record is
 *   that claim's, not a later claim's of the key;
 * - an entry of a kind this build does not know (one a newer build wrote) is logged and skipped.
 *
 * MongoDB documents: bots `{ ...doc, _id: botId, changeVersion, changedAt }`, events of a version
 * `{ ...event, _id: eventId(botId, version, at), botId, version, at, seq }`, other events `{ ...event, botId, seq }`
 * (their `_id` chosen by the writer).
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

export type RecordId = string | mongo.ObjectId;

/** A bot as the flusher stores it; `_id` is the bot's id (as `RecordCodec.id` gives it). */
export type BotRecord = { _id: RecordId; changeVersion: number; changedAt: Date } & mongo.Document;

/**
 * How the JSON of a change becomes MongoDB documents (ids, dates). By default as it is, the bot's id as a
 * string.
 */
export interface RecordCodec {
  /** A bot record's `_id`, and its events' `botId`. */
  id(botId: string): RecordId;
  bot(doc: Record<string, unknown>): mongo.Document;
  event(event: Record<string, unknown>): mongo.Document;
  /** For a new bot that has not ended, since when it is live: it is marked in the live index then. */
  liveSince?(doc: Record<string, unknown>): Date | null;
  /** A claim's record; it must hold its `_id` and a `createdAt` date. */
  claim?(record: Record<string, unknown>): ClaimRecord;
}

/** A claim as the flusher stores it (see `RecordCodec.claim`). */
export type ClaimRecord = { _id: string; createdAt: Date } & mongo.Document;

const asItIs: RecordCodec = { id: (botId) => botId, bot: (doc) => doc, event: (event) => event };

export interface FlusherOptions {
  redis: Redis;
  prefix: string;
  bots: mongo.Collection<BotRecord>;
  events: mongo.Collection;
  /** The live index (bot-changes.ts `append` marks and unmarks bots in it), where there is one. */
  live?: mongo.Collection<{ _id: RecordId; createdAt: Date }>;
  /** Where claims are kept, where there are any (the Idempotency-Keys). */
  claims?: mongo.Collection<ClaimRecord>;
  /** Must match the writers' (createBotChanges). */
  partitions?: number;
  codec?: RecordCodec;
  /** Names this process in the leases. */
  owner?: string;
  /** A partition's lease, renewed every third of it: a holder that died holds its partitions this long. */
  leaseMs?: number;
  batchSize?: number;
  /**
   * Takes a partition only once it has had no writer for a whole lease: so that partitions go to the
   * flushers that are not standbys, and a standby writes only while there are none (worker processes are
   * standbys, see fleet.ts).
   */
  standby?: boolean;
}

/**
 * FerretDB hangs, and with it every later call, on an update command of 100 statements or more; and also on
 * several update commands at once with ~140 statements or more between them (measured: 2 × 99, 3 × 70 and
 * 4 × 50 hung; 2 × 50 and 8 × 20 did not; inserts alongside one update did not). So commands stay at 99
 * statements, and the fleet sends one update command at a time: one per flusher, under a Redis lock shared
 * by every flusher of the fleet.
 */
const MAX_UPDATES_PER_COMMAND = 99;
const MAX_INSERTS_PER_COMMAND = 100;
const GROUP = 'flusher';
const DUPLICATE_KEY = 11000;

export const leaseKey = (prefix: string, partition: number) => `${prefix}:flusher-lease:${partition}`;
const updateLockKey = (prefix: string) => `${prefix}:flusher-update-lock`;
/**
 * The update lock's lease, renewed while its holder's command runs: a holder that died (a process killed,
 * a machine restarted) holds up the fleet's updates this long at most.
 */
const UPDATE_LOCK_MS = 5_000;
/** Renewed this long, the lock is held by a command that hung: the waiter retries its batch, saying why. */
const UPDATE_WAIT_MS = 60_000;

/**
 * Where an event's entry stood in its partition stream, as text that sorts in stream order. A bot's entries
 * all go to one partition, so its events sort in the order Redis took them, whichever process wrote them.
 */
export function sequenceOf(streamId: string): string {
  const [ms, seq] = streamId.split('-');
  return `${ms.padStart(15, '0')}-${seq.padStart(6, '0')}`;
}

/**
 * The `_id` of the event of a bot's version: the same on every replay. The change's time (Redis's clock) is
 * part of it because a version can be given twice, by a Redis that lost its last second of writes after
 * they were flushed (README, "Restarts and failures"); both changes happened, and both are kept.
 */
export function eventId(botId: string, version: number, at: Date): mongo.ObjectId {
  return new mongo.ObjectId(
    createHash('sha256').update(`${botId}:${version}:${at.getTime()}`).digest().subarray(0, 12),
  );
}

/**
 * KEYS: lease, stream. ARGV: owner, group, consumer, count. Reads only while holding the lease, so a holder
 * that lost it (paused past its expiry) cannot take entries out of order from under the new one. Entries
 * delivered but never acknowledged (a dead holder's) come first; each partition has one fixed consumer, so
 * they are all its own. Nothing to read: answers the stream's last id, to block on until a newer one.
 */
const READ = new RedisScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local function read(from)
  local answer = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], from)
  if answer and #answer[1][2] > 0 then return answer[1][2] end
end
local entries = read('0') or read('>')
if entries then return {1, entries} end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
return {2, last and last[1] or '0-0'}`);

/**
 * KEYS: lease, stream, flushed. ARGV: owner, group, last id, the ids. Entries are read in order and each
 * batch is acknowledged before the next is read, so everything up to the last id is written: trimmed, and
 * recorded as flushed for waitFlushed.
 */
const ACK = new RedisScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, 4))
local ms, seq = string.match(ARGV[3], '(%d+)-(%d+)')
redis.call('XTRIM', KEYS[2], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
redis.call('SET', KEYS[3], ARGV[3])
return 1`);

/**
 * The bot's record if it holds an older version than (version, at). Like `anyOf`, it names its documents by
 * a top-level `_id` condition, which our FerretDB build looks up in its index whatever else the filter says
 * (scripts/ferretdb.patch); upstream, or with any other shape, each write scans and decodes the whole
 * collection (test/flusher.test.ts).
 */
const olderThan = (id: RecordId, version: number, at: Date): mongo.Filter<BotRecord> => ({
  _id: id,
  $or: [
    { changeVersion: { $lt: version } },
    // the same version again, decided later: a Redis that lost this version's first change
    { changeVersion: version, changedAt: { $lt: at } },
    // a record written before versions were kept has none: any version is newer
    { changeVersion: { $exists: false } },
  ],
});

/** The records of these ids. */
const anyOf = (ids: RecordId[]): mongo.Filter<{ _id: RecordId }> => ({ _id: { $in: ids } });

/** A version of a bot, with the event that records it if any. */
interface VersionEntry {
  id: string;
  botId: string;
  kind: 'insert' | 'snapshot';
  version: number;
  at: Date;
  doc: Record<string, unknown>;
  event?: Record<string, unknown>;
}

/**
 * What is not a version: an event on its own, a live-index mark or unmark (bot-changes.ts `append`), a claim,
 * or a removal (bot-changes.ts `forget`).
 */
type RecordEntry =
  | { id: string; botId: string; kind: 'event'; event: Record<string, unknown> }
  | { id: string; botId: string; kind: 'claim'; claim: Record<string, unknown> }
  | { id: string; botId: string; kind: 'live'; at: Date }
  | { id: string; botId: string; kind: 'unlive' }
  | RemovalEntry;

/** An undone create, with the record of the claim it freed if any. */
interface RemovalEntry {
  id: string;
  botId: string;
  kind: 'removed';
  claim?: Record<string, unknown>;
}

type Entry = VersionEntry | RecordEntry;

const isVersion = (entry: Entry): entry is VersionEntry => entry.kind === 'insert' || entry.kind === 'snapshot';

/** An entry trimmed after delivery (by a holder that lost its lease, once it was written) has no fields. */
type RawEntry = [string, string[] | null];

/** A document or event as bot-changes.ts wrote it into the stream: a JSON object. */
const parseRecord = (json: string) => JSON.parse(json) as Record<string, unknown>;

function parse([id, fields]: RawEntry): Entry | null {
  if (!fields) return null;
  const f: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  const botId = f.bot;
  if (f.kind === 'event') return { id, botId, kind: 'event', event: parseRecord(f.event) };
  if (f.kind === 'claim') return { id, botId, kind: 'claim', claim: parseRecord(f.claim) };
  if (f.kind === 'live') return { id, botId, kind: 'live', at: new Date(Number(f.at)) };
  if (f.kind === 'unlive') return { id, botId, kind: 'unlive' };
  if (f.kind === 'removed')
    return { id, botId, kind: 'removed', claim: f.claim === undefined ? undefined : parseRecord(f.claim) };
  if (f.kind !== 'insert' && f.kind !== 'snapshot') {
    // Written by a newer build, during a rolling upgrade: skipped (and acknowledged with its batch), so that
    // its effect is missing in MongoDB rather than every bot of the partition stopping there.
    logger.warn('skipping a stream entry of an unknown kind', { role: 'flusher', id, botId, kind: f.kind });
    return null;
  }
  return {
    id,
    botId,
    kind: f.kind,
    version: Number(f.version),
    at: new Date(Number(f.at)),
    doc: parseRecord(f.doc),
    event: f.event === undefined ? undefined : parseRecord(f.event),
  };
}

const chunks = <T>(items: T[], size: number): T[][] =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));

/** Inserts in batches; answers the indexes refused as duplicates, and throws on any other failure. */
async function insertAll<T extends mongo.Document>(
  collection: mongo.Collection<T>,
  docs: mongo.OptionalUnlessRequiredId<T>[],
): Promise<Set<number>> {
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

/**
 * Runs each call holding a lock in Redis shared by every process with the same key, after this process's
 * earlier calls settled. Waits for the lock (a dead holder's lapses after UPDATE_LOCK_MS) unless `stop()`,
 * and fails after UPDATE_WAIT_MS: the batch is then retried, and the flusher reports the reason as its error.
 */
function oneAtATimeFleetWide(redis: Redis, key: string, stop: () => boolean): OneAtATime {
  const local = oneAtATime();
  return (fn) =>
    local(async () => {
      const token = randomBytes(8).toString('hex');
      const deadline = Date.now() + UPDATE_WAIT_MS;
      let delay = 2;
      while ((await redis.set(key, token, 'PX', UPDATE_LOCK_MS, 'NX')) !== 'OK') {
        if (stop()) throw new Error('flusher closing');
        if (Date.now() > deadline)
          throw new Error(`the update lock stayed taken for ${UPDATE_WAIT_MS} ms (an update command hung?)`);
        await new Promise((resolve) => setTimeout(resolve, delay + Math.random() * delay));
        delay = Math.min(delay * 2, 50);
      }
      // (a renewal that fails leaves the command running: the lock's only job is to keep others from theirs)
      const renewal = setInterval(
        () => void RENEW_LOCK.run(redis, 1, key, token, UPDATE_LOCK_MS).catch(() => undefined),
        UPDATE_LOCK_MS / 3,
      );
      try {
        return await fn();
      } finally {
        clearInterval(renewal);
        await RELEASE_LOCK.run(redis, 1, key, token).catch(() => undefined);
      }
    });
}

/** Runs each call after every earlier one has settled. */
function oneAtATime(): OneAtATime {
  let tail: Promise<unknown> = Promise.resolve();
  return (fn) => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

interface Collections {
  bots: mongo.Collection<BotRecord>;
  events: mongo.Collection;
  live?: mongo.Collection<{ _id: RecordId; createdAt: Date }>;
  claims?: mongo.Collection<ClaimRecord>;
}

/** The events of these entries, as MongoDB stores them. */
function eventRecords(entries: Entry[], codec: RecordCodec): mongo.Document[] {
  return entries.flatMap((entry) => {
    if (entry.kind === 'event')
      return [{ ...codec.event(entry.event), botId: codec.id(entry.botId), seq: sequenceOf(entry.id) }];
    if (!isVersion(entry) || entry.event === undefined) return [];
    return [
      {
        // Redis's time unless the writer stamped the event itself
        at: entry.at,
        ...codec.event(entry.event),
        _id: eventId(entry.botId, entry.version, entry.at),
        botId: codec.id(entry.botId),
        version: entry.version,
        seq: sequenceOf(entry.id),
      },
    ];
  });
}

/** The events of stream entries (`BotChanges.unflushed`) as the flusher will store them in MongoDB. */
export function eventsOfEntries(entries: StreamEntry[], codec: RecordCodec): mongo.Document[] {
  return eventRecords(
    entries.map(parse).filter((entry): entry is Entry => entry !== null),
    codec,
  );
}

/**
 * One batch, in order where it matters: a removal deletes what came before it of its bot, so that bot's
 * versions, events and marks earlier in the batch are left out (the claims stay, for the removal to delete
 * as it would a claim written in an earlier batch), and the deletes follow the rest. An entry of a bot after
 * its removal in the batch (a create made again under the bot's id) is written after those deletes, with the
 * entries that follow it. Removals are rare: they come one at a time.
 */
async function write(
  collections: Collections,
  codec: RecordCodec,
  entries: Entry[],
  updating: OneAtATime,
): Promise<void> {
  let part: Entry[] = [];
  let removals: RemovalEntry[] = [];
  const writePart = async () => {
    await writeRecords(collections, codec, part, updating);
    for (const removal of removals) await deleteRemoved(collections, codec, removal);
    part = [];
    removals = [];
  };
  for (const entry of entries) {
    if (removals.some((removal) => removal.botId === entry.botId)) await writePart();
    if (entry.kind !== 'removed') part.push(entry);
    else {
      part = part.filter((e) => e.botId !== entry.botId || e.kind === 'claim');
      removals.push(entry);
    }
  }
  await writePart();
}

/**
 * Deletes a removed bot's record, its events, its live-index mark, and the record of the claim it freed
 * while that is the claim's (every field matches; a later claim of the key wrote another).
 */
async function deleteRemoved(
  { bots, events, live, claims }: Collections,
  codec: RecordCodec,
  { botId, claim }: RemovalEntry,
): Promise<void> {
  const id = codec.id(botId);
  await bots.deleteOne({ _id: id });
  await events.deleteMany({ botId: id });
  if (live) await live.deleteOne({ _id: id });
  if (claim && claims && codec.claim) await claims.deleteOne(codec.claim(claim));
}

/**
 * Entries with no removal among them as few MongoDB commands: events, live-index marks, claims, new bots,
 * then each changed bot's latest document once, then unmarks. In any order would do: nothing is acknowledged
 * before all of it is written, and each write is idempotent.
 */
async function writeRecords(
  { bots, events, live, claims }: Collections,
  codec: RecordCodec,
  entries: Entry[],
  updating: OneAtATime,
): Promise<void> {
  const latest = new Map<string, VersionEntry>();
  const created = new Set<string>();
  // Per bot, the live-index operation that comes last in the batch wins.
  const liveSince = new Map<string, Date | null>();
  for (const entry of entries) {
    if (entry.kind === 'live') liveSince.set(entry.botId, entry.at);
    else if (entry.kind === 'unlive') liveSince.set(entry.botId, null);
    if (!isVersion(entry)) continue;
    if (entry.kind === 'insert') {
      created.add(entry.botId);
      const since = codec.liveSince?.(entry.doc);
      if (since) liveSince.set(entry.botId, since);
    }
    if ((latest.get(entry.botId)?.version ?? 0) < entry.version) latest.set(entry.botId, entry);
  }

  await insertAll(events, eventRecords(entries, codec));
  const marks = [...liveSince].filter(([, since]) => since !== null);
  if (live && marks.length > 0)
    await insertAll(
      live,
      marks.map(([botId, since]) => ({ _id: codec.id(botId), createdAt: since! })),
    );

  if (claims && codec.claim)
    await writeClaims(
      claims,
      entries.flatMap((entry) => (entry.kind === 'claim' ? [codec.claim!(entry.claim)] : [])),
      updating,
    );

  // The bot's id is the `_id`, whatever the document says.
  const fields = ({ doc, version, at }: VersionEntry) => {
    const record = { ...codec.bot(doc) };
    delete record._id;
    return { ...record, changeVersion: version, changedAt: at };
  };

  const inserts = [...created].map((botId) => latest.get(botId)!);
  const replayed = await insertAll(
    bots,
    inserts.map((entry) => ({ ...fields(entry), _id: codec.id(entry.botId) })),
  );
  const updates = [
    ...[...latest.values()].filter((entry) => !created.has(entry.botId)),
    ...inserts.filter((_, index) => replayed.has(index)),
  ];
  for (const chunk of chunks(updates, MAX_UPDATES_PER_COMMAND)) {
    await updating(() =>
      bots.bulkWrite(
        chunk.map((entry) => ({
          updateOne: {
            filter: olderThan(codec.id(entry.botId), entry.version, entry.at),
            update: { $set: fields(entry) },
          },
        })),
        { ordered: false },
      ),
    );
  }
  const unmarks = [...liveSince].filter(([, since]) => since === null).map(([botId]) => codec.id(botId));
  if (live && unmarks.length > 0) await live.deleteMany(anyOf(unmarks));
}

/**
 * Inserts the claims; one whose key MongoDB holds already (a replay, or a key that expired and was claimed
 * again) replaces the record only if that is older. Replacements are updates: at most 99 to a command, one
 * command at a time (see MAX_UPDATES_PER_COMMAND).
 */
async function writeClaims(
  claims: mongo.Collection<ClaimRecord>,
  records: ClaimRecord[],
  updating: OneAtATime,
): Promise<void> {
  if (records.length === 0) return;
  const duplicates = await insertAll(claims, records);
  const newer = records.filter((_, index) => duplicates.has(index));
  for (const chunk of chunks(newer, MAX_UPDATES_PER_COMMAND)) {
    await updating(() =>
      claims.bulkWrite(
        chunk.map(({ _id, ...record }) => ({
          // named by a top-level `_id` condition, as `olderThan`
          updateOne: { filter: { _id, createdAt: { $lt: record.createdAt } }, update: { $set: record } },
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
  const { redis, prefix } = options;
  const collections: Collections = {
    bots: options.bots,
    events: options.events,
    live: options.live,
    claims: options.claims,
  };
  const partitions = options.partitions ?? 4;
  const owner = options.owner ?? `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const leaseMs = options.leaseMs ?? 5_000;
  const batchSize = options.batchSize ?? 500;
  // Short enough that a lost lease or close() is noticed soon, long enough to cost nothing when idle.
  const blockMs = Math.min(1000, Math.floor(leaseMs / 3));
  const log = logger.child({ role: 'flusher' });
  const states: PartitionState[] = Array.from({ length: partitions }, () => ({ held: false }));
  // Blocking reads hold their connection; each partition has its own, closed on close() to end the wait.
  // Their errors are the main connection's too, which logs them. Their first read may come before they are
  // connected, so it waits in their queue (the connection they copy, an API producer's, may refuse to queue).
  const blocking = Array.from({ length: partitions }, () =>
    redis.duplicate({ enableOfflineQueue: true }).on('error', () => undefined),
  );
  const codec = options.codec ?? asItIs;
  let closing = false;
  // Ends every wait on a blocking read at close(). Disconnecting alone does not while Redis is away: ioredis
  // keeps a read that was on the wire to resend once reconnected, and a disconnected client never reconnects.
  let signalClosed!: () => void;
  const closed = new Promise<void>((resolve) => (signalClosed = resolve));
  const updating = oneAtATimeFleetWide(redis, updateLockKey(prefix), () => closing);
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  const writeBatch = (partition: number, entries: Entry[]) => {
    const state = states[partition];
    return withRetries(
      async () => {
        try {
          await write(collections, codec, entries, updating);
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
      const answer = (await READ.run(redis, 2, lease, stream, owner, GROUP, `partition-${partition}`, batchSize)) as
        [0] | [1, RawEntry[]] | [2, string];
      if (answer[0] === 0) {
        // expired or taken before a renewal noticed
        state.held = false;
        return;
      }
      if (answer[0] === 2) {
        const read = blocking[partition].xread('BLOCK', blockMs, 'STREAMS', stream, answer[1]);
        read.catch(() => undefined); // its failure after close() is no one's concern
        await Promise.race([read, closed]);
        continue;
      }
      const raw = answer[1];
      const entries = raw.map(parse).filter((entry): entry is Entry => entry !== null);
      await writeBatch(partition, entries);
      const ids = raw.map(([id]) => id);
      await ACK.run(redis, 3, lease, stream, flushedKey(prefix, partition), owner, GROUP, ids[ids.length - 1], ...ids);
    }
  };

  const run = async (partition: number) => {
    const state = states[partition];
    const lease = leaseKey(prefix, partition);
    let freeSince: number | undefined;
    const mayTake = async () => {
      if (!options.standby) return true;
      if ((await redis.exists(lease)) === 1) freeSince = undefined;
      else freeSince ??= Date.now();
      return freeSince !== undefined && Date.now() - freeSince >= leaseMs;
    };
    while (!closing) {
      try {
        if (!state.held && (await mayTake()))
          state.held = (await redis.set(lease, owner, 'PX', leaseMs, 'NX')) === 'OK';
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
      RENEW_LOCK.run(redis, 1, leaseKey(prefix, partition), owner, leaseMs).then(
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
      signalClosed();
      clearInterval(renewer);
      blocking.forEach((connection) => connection.disconnect());
      await Promise.all(running);
      await Promise.all(
        states.map(async (state, partition) => {
          if (!state.held) return;
          state.held = false;
          await RELEASE_LOCK.run(redis, 1, leaseKey(prefix, partition), owner).catch(() => undefined);
        }),
      );
    },
  };
}
