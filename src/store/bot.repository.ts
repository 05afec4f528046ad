import { QueryFilter, Types } from 'mongoose';
import { checkAfterReconnect, LAST_WRITES_MS } from '../connections';
import { BotStatus, isTerminal } from '../domain/bot.lifecycle';
import { decideTransition, TransitionRequest } from '../domain/transition';
import { TransitionError } from '../errors';
import { logger } from '../logger';
import { withTimeout } from '../retry';
import { BotChanges, Change, Claim, KeyChange, Live } from './bot-changes';
import { eventsOfEntries, RecordCodec } from './flusher';
import { claimRecord } from './idempotency-keys';
import { BotDoc, BotEventDoc, Models } from './models';

/**
 * Bot documents and their events. A bot's document lives in Redis while it is live (bot-changes.ts), where
 * every change is decided; MongoDB receives the changes in batches from the flusher (flusher.ts). Reads of
 * one bot answer from Redis first, so a client always reads its own writes; lists and event histories come
 * from MongoDB once it holds every change made before the read.
 */
export interface BotRepository {
  /**
   * Creates the bot, records `event` as its first and (unless it has ended) marks it in the live index, in one
   * Redis step that also makes its number name it, and takes `claim`'s key; a bot of that id already there
   * rejects with code 11000, a claim's key taken already with ClaimTakenError.
   */
  insert(bot: BotDoc, event?: Omit<BotEventDoc, '_id' | 'botId'>, claim?: Claim): Promise<BotDoc>;
  findById(id: string): Promise<BotDoc | null>;
  findForOwner(ownerId: string, id: string): Promise<BotDoc | null>;
  list(ownerId: string, filter: ListFilter): Promise<BotDoc[]>;
  /** The newest bots of every owner (the operator's fleet page). */
  recent(limit: number): Promise<BotDoc[]>;
  /**
   * Applies a lifecycle request (see domain/transition.ts) and records its status event, in one step per
   * bot, with the key changes `alongside` gives for the bot as decided. Returns the updated bot, the refusal
   * with the bot as it is, or null when there is no such bot (or, with `ownerId`, none of that owner's).
   */
  transition(id: string, request: TransitionRequest, options?: TransitionOptions): Promise<TransitionOutcome | null>;
  /** Sets fields with no status guard (identifiers, timestamps), recording `event` with them in the same step. */
  update(id: string, set: Partial<BotDoc>, event?: Omit<BotEventDoc, '_id' | 'botId'>): Promise<BotDoc | null>;
  appendEvent(botId: string, event: Omit<BotEventDoc, '_id' | 'botId'>): Promise<void>;
  appendEvents(events: Array<Omit<BotEventDoc, '_id' | 'botId'> & { botId: string }>): Promise<void>;
  events(botId: string, limit: number): Promise<BotEventDoc[]>;
  /**
   * Undoes a create whose placement failed: the bot is gone from Redis at once, and so is the key of its
   * claim (`claimKey`), if any, while that claim names it; MongoDB deletes whatever the flusher wrote of them
   * when it writes the removal, which comes after them (see BotChanges.forget). Waits for that a bounded time
   * (`readYourWritesMs`), so that a read right after, which asks MongoDB once Redis holds no bot, finds none.
   */
  remove(id: string, claimKey?: string): Promise<void>;
  /** The live index (see LiveBotDoc): marked before a new bot is placed, unmarked once it has ended. */
  markLive(id: string, createdAt: Date): Promise<void>;
  unmarkLive(id: string): Promise<void>;
  /** Every bot in the live index, oldest first. */
  liveBots(): Promise<Array<{ id: string; createdAt: Date }>>;
  /**
   * For a Redis that lost its last writes: puts back every bot MongoDB changed after `since` that Redis holds
   * at an older version (or not at all), so that no version is given twice to different changes and MongoDB,
   * which keeps the newest version it was given, never keeps a branch Redis forgot. Runs by itself after each
   * reconnection to another Redis server than before (restarted, or failed over), and this repository's
   * changes wait for it (bounded). Answers how many were put back.
   */
  repairLostWrites(since: Date): Promise<number>;
}

export type TransitionOutcome = { bot: BotDoc; refused?: undefined } | { bot: BotDoc; refused: TransitionError };

export interface TransitionOptions {
  /** Key changes made in the same step, for the bot as decided. */
  alongside?: (next: BotDoc) => KeyChange[];
  /** Only a bot of this owner: another owner's is answered as no bot, and left as it is. */
  ownerId?: string;
}

export interface ListFilter {
  status?: BotStatus;
  platform?: string;
  limit: number;
  /** Id of the last bot of the previous page; the next page holds older bots. */
  before?: string;
}

export interface BotRepositoryOptions {
  /** How long a list or event history waits for MongoDB to hold the changes made before it (then reads anyway). */
  readYourWritesMs?: number;
  /** How long Redis keeps an ended bot's document (its reads and late reports need no MongoDB read meanwhile). */
  keepEndedMs?: number;
  /**
   * Told of every bot MongoDB changed around a loss of Redis's last writes, once repaired (repairLostWrites):
   * `statusPutBack` when its status change was lost from Redis and put back, so what the lost step made
   * alongside the change (its webhook event) is made again.
   */
  afterLostWrites?: (bot: BotDoc, statusPutBack: boolean) => Promise<void>;
}

/** How long a change waits for the repair after a reconnection (MongoDB may be away: then it cannot help). */
const LOST_WRITES_WAIT_MS = 5_000;

export function isObjectId(id: string): boolean {
  return /^[0-9a-f]{24}$/i.test(id);
}

/** A bot's document as JSON (Redis, the change streams) and back. */
const DATE_FIELDS = [
  'joinAt',
  'createdAt',
  'queuedAt',
  'deployingAt',
  'deployedAt',
  'endedAt',
  'lastHeartbeatAt',
  'leaveRequestedAt',
  'statusChangedAt',
] as const;

type BotJsonDoc = Record<string, unknown>;

export function botFromJson(json: BotJsonDoc): BotDoc {
  const bot: Record<string, unknown> = { ...json, _id: new Types.ObjectId(json._id as string) };
  for (const field of DATE_FIELDS) if (typeof json[field] === 'string') bot[field] = new Date(json[field]);
  bot.attempts = ((json.attempts as Array<Record<string, unknown>>) ?? []).map((attempt) => ({
    ...attempt,
    at: new Date(attempt.at as string),
  }));
  return bot as unknown as BotDoc;
}

/** Bot changes take the document as it is: they store its JSON (ids and dates as text). */
const asChange = (bot: BotDoc) => bot as unknown as BotJsonDoc;

/** How the flusher stores bots and their status events: ObjectIds and dates, as the rest of MongoDB has them. */
export const botRecordCodec: RecordCodec = {
  id: (botId) => new Types.ObjectId(botId),
  bot: (doc) => botFromJson(doc),
  event: ({ _id, at, ...event }) => ({
    ...event,
    ...(typeof _id === 'string' ? { _id: new Types.ObjectId(_id) } : {}),
    ...(typeof at === 'string' ? { at: new Date(at) } : {}),
  }),
  liveSince: (doc) => (isTerminal(doc.status as BotStatus) ? null : new Date(doc.createdAt as string)),
  claim: claimRecord,
};

/** The key of a claim was held already, by `value`: nothing was written. */
export class ClaimTakenError extends Error {
  constructor(readonly value: string) {
    super('the key is taken');
  }
}

/** The events query's order: time, then position in the bot's stream, then id. */
function inHistoryOrder(a: BotEventDoc, b: BotEventDoc): number {
  const text = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return a.at.getTime() - b.at.getTime() || text(a.seq ?? '', b.seq ?? '') || text(String(a._id), String(b._id));
}

/** A MongoDB record of a bot without the flusher's bookkeeping, and the version it was written at. */
function fromRecord(record: (BotDoc & { changeVersion?: number; changedAt?: Date }) | null) {
  if (!record) return null;
  const { changeVersion, ...bot } = record;
  delete bot.changedAt;
  return { bot, version: changeVersion ?? 0 };
}

const NOT_THERE = { refused: 'not there' } as const;

export function createBotRepository(
  { Bot, BotEvent, LiveBot }: Models,
  changes: BotChanges,
  { readYourWritesMs = 5_000, keepEndedMs = 24 * 3600 * 1000, afterLostWrites }: BotRepositoryOptions = {},
): BotRepository {
  let repairing: Promise<unknown> | undefined;
  const readStored = async (id: string) =>
    fromRecord(await Bot.findById(id).lean<BotDoc & { changeVersion?: number }>());

  /**
   * The one write path: `decide` sees the bot as it is and returns the next document (and its event), a
   * refusal, or null to treat the bot as absent. Redis applies it only over the version decided on, else it
   * is decided again. A bot Redis does not hold (it lost its data, or forgot an ended bot) is first put
   * back from MongoDB.
   */
  const write = async (
    id: string,
    decide: (
      current: BotDoc,
    ) => { next: BotDoc; event?: Omit<BotEventDoc, '_id' | 'botId'>; alongside?: KeyChange[] } | TransitionError | null,
  ): Promise<TransitionOutcome | null> => {
    if (repairing) await withTimeout(repairing, LOST_WRITES_WAIT_MS).catch(() => undefined);
    let refusal: { bot: BotDoc; refused: TransitionError } | undefined;
    let absent = false;
    const decideLive = (live: Live<BotJsonDoc> | null): Change<BotJsonDoc> | { refused: string } => {
      if (!live) return NOT_THERE;
      const current = botFromJson(live.doc);
      const decision = decide(current);
      if (decision === null) {
        absent = true;
        return NOT_THERE;
      }
      if (decision instanceof TransitionError) {
        refusal = { bot: current, refused: decision };
        return { refused: decision.message };
      }
      const event = decision.event && withTextData(decision.event);
      const ended = isTerminal(decision.next.status);
      // An ended bot's number names it as long as Redis keeps its document; MongoDB answers after that.
      const alongside = [...(decision.alongside ?? [])];
      if (ended && decision.next.number)
        alongside.push({ op: 'pexpire', key: changes.numberKey(decision.next.number), score: keepEndedMs });
      return { doc: asChange(decision.next), event, expireMs: ended ? keepEndedMs : undefined, alongside };
    };
    for (let round = 0; round < 2; round++) {
      const result = await changes.update<BotJsonDoc>(id, decideLive);
      // the document decided on, as it was decided
      if (!('refused' in result)) return { bot: result.doc as unknown as BotDoc };
      if (refusal) return refusal;
      if (absent) return null;
      const stored = await readStored(id);
      if (!stored) return null;
      // A record from before versions were kept counts as version 1: version 0 means "no such bot" to an insert.
      await changes.seed(id, Math.max(stored.version, 1), asChange(stored.bot));
    }
    return null;
  };

  const findById = async (id: string): Promise<BotDoc | null> => {
    if (!isObjectId(id)) return null;
    const live = await changes.read<BotJsonDoc>(id);
    if (live) return botFromJson(live.doc);
    // an undone create MongoDB may hold until the flusher writes its removal
    if (await changes.wasRemoved(id)) return null;
    return (await readStored(id))?.bot ?? null;
  };

  /** Waits (bounded) until MongoDB holds every change made so far, then lays Redis's newer documents over. */
  const fromMongo = async (query: () => Promise<BotDoc[]>) => {
    await changes.waitFlushed('now', readYourWritesMs);
    const stored = await query();
    const live = await changes.readMany<BotJsonDoc>(stored.map((bot) => String(bot._id)));
    return stored.map((bot, i) => {
      const liveDoc = live[i];
      return liveDoc ? botFromJson(liveDoc) : fromRecord(bot)!.bot;
    });
  };

  const repairLostWrites = async (since: Date) => {
    let putBack = 0;
    const cursor = Bot.find({ changedAt: { $gt: since } })
      .lean<BotDoc & { changeVersion?: number; changedAt?: Date }>()
      .cursor({ batchSize: 500 });
    for await (const record of cursor) {
      const { changedAt } = record;
      const stored = fromRecord(record)!;
      const id = String(stored.bot._id);
      if (!changedAt) continue; // written before versions were kept: long before any loss
      const expireMs = isTerminal(stored.bot.status) ? keepEndedMs : 0;
      const held = await changes.restore<BotJsonDoc>(
        id,
        stored.version,
        changedAt.getTime(),
        asChange(stored.bot),
        expireMs,
      );
      if (held !== undefined) putBack++;
      const statusPutBack =
        held !== undefined &&
        Number(held?.statusVersion ?? 0) < stored.bot.statusVersion &&
        (stored.bot.statusChangedAt?.getTime() ?? 0) > since.getTime();
      await afterLostWrites?.(stored.bot, statusPutBack);
    }
    return putBack;
  };

  changes.onReconnected((lostAt, sameServer) => {
    repairing = sameServer
      .then((same) => (same ? 0 : checkAfterReconnect(() => repairLostWrites(new Date(lostAt - LAST_WRITES_MS)))))
      .then((putBack) => {
        if (putBack > 0)
          logger.warn('Redis came back without its last writes: bots put back from MongoDB', { putBack });
      })
      .catch((error: unknown) =>
        logger.warn('bots: not compared with MongoDB after Redis reconnected', { error: String(error) }),
      )
      .finally(() => (repairing = undefined));
  });

  return {
    repairLostWrites,
    async insert(bot, event, claim) {
      const id = String(bot._id);
      const alongside: KeyChange[] = bot.number ? [{ op: 'set', key: changes.numberKey(bot.number), member: id }] : [];
      const result = await changes.apply(id, 0, asChange(bot), event && withTextData(event), 0, alongside, claim);
      if ('conflict' in result) throw Object.assign(new Error(`bot ${id} exists already`), { code: 11000 });
      if ('taken' in result) throw new ClaimTakenError(result.taken.value);
      return bot;
    },
    findById,
    async findForOwner(ownerId, id) {
      const bot = await findById(id);
      return bot?.ownerId === ownerId ? bot : null;
    },
    recent: (limit) => fromMongo(() => Bot.find({}).sort({ _id: -1 }).limit(limit).lean<BotDoc[]>()),
    list(ownerId, { status, platform, limit, before }) {
      const query: QueryFilter<BotDoc> = { ownerId };
      if (status) query.status = status;
      if (platform) query.platform = platform;
      if (before) query._id = { $lt: new Types.ObjectId(before) };
      return fromMongo(() => Bot.find(query).sort({ _id: -1 }).limit(limit).lean<BotDoc[]>());
    },
    async transition(id, request, { alongside, ownerId } = {}) {
      if (!isObjectId(id)) return null;
      return write(id, (current) => {
        if (ownerId !== undefined && current.ownerId !== ownerId) return null;
        const change = decideTransition(current, request, Date.now());
        if (change instanceof TransitionError) return change;
        const next: BotDoc = { ...current, ...(change.set as Partial<BotDoc>) };
        if (change.attempt) next.attempts = [...(current.attempts ?? []), change.attempt];
        if (change.exclude && !current.excludedPlatforms.includes(change.exclude)) {
          next.excludedPlatforms = [...current.excludedPlatforms, change.exclude];
        }
        return {
          next,
          event: { type: 'status', at: change.set.statusChangedAt, ...change.event },
          alongside: alongside?.(next),
        };
      });
    },
    async update(id, set, event) {
      if (!isObjectId(id)) return null;
      return (await write(id, (current) => ({ next: { ...current, ...set }, event })))?.bot ?? null;
    },
    async appendEvent(botId, event) {
      await changes.append([{ botId, kind: 'event', event: toStoredEvent(event) }]);
    },
    async appendEvents(events) {
      await changes.append(
        events.map(({ botId, ...event }) => ({ botId, kind: 'event', event: toStoredEvent(event) })),
      );
    },
    async events(botId, limit) {
      if (!isObjectId(botId)) return [];
      // Read before MongoDB: whatever the flusher writes meanwhile is trimmed from the stream only once
      // MongoDB has it, so each event is in one answer or the other (in both, it counts once).
      const unflushed = await changes.unflushed(botId);
      // A flusher too far behind to scan its backlog: wait for it a bounded time, as lists do.
      if (!unflushed) await changes.waitFlushed('now', readYourWritesMs);
      const stored = await BotEvent.find({ botId: new Types.ObjectId(botId) })
        .sort({ at: 1, seq: 1, _id: 1 })
        .limit(limit)
        .lean<BotEventDoc[]>();
      if (!unflushed?.length) return stored;
      const byId = new Map(stored.map((event) => [String(event._id), event]));
      for (const event of eventsOfEntries(unflushed, botRecordCodec) as BotEventDoc[])
        byId.set(String(event._id), byId.get(String(event._id)) ?? event);
      return [...byId.values()].sort(inHistoryOrder).slice(0, limit);
    },
    async remove(id, claimKey) {
      const [doc] = await changes.readMany<{ number?: number }>([id]);
      const removal = await changes.forget(id, doc?.number, claimKey);
      // Then MongoDB holds nothing of the bot: the flusher wrote its removal, or nothing of it yet. One further
      // behind may still write its create in a batch before its removal's: readers see the bot in between.
      await changes.waitFlushed([removal], readYourWritesMs);
    },
    async markLive(id, createdAt) {
      await changes.append([{ botId: id, kind: 'live', createdAt }]);
    },
    async unmarkLive(id) {
      await changes.append([{ botId: id, kind: 'unlive' }]);
    },
    async liveBots() {
      // the index as MongoDB has it once every mark and unmark made so far is written
      await changes.waitFlushed('now', readYourWritesMs);
      const docs = await LiveBot.collection.find({}).toArray();
      return docs
        .map((doc) => ({ id: String(doc._id), createdAt: doc.createdAt as Date }))
        .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1));
    },
  };
}

/** A status event of a version: its `_id` comes from the version (flusher.ts `eventId`). */
function withTextData({ data, ...event }: Omit<BotEventDoc, '_id' | 'botId'>) {
  return data === undefined ? event : { ...event, data: JSON.stringify(data) };
}

/**
 * An event as the stream carries it, its `_id` chosen now so that a replay writes it once. Event data is
 * free-form JSON from bots; it is stored as text since its keys may hold dots or dollars.
 */
function toStoredEvent({ data, at, ...event }: Omit<BotEventDoc, '_id' | 'botId'>) {
  const stored: { _id: string } & Record<string, unknown> = {
    _id: new Types.ObjectId().toHexString(),
    ...event,
    at: at.toISOString(),
  };
  if (data !== undefined) stored.data = JSON.stringify(data);
  return stored;
}
