import { mongo, QueryFilter, Types, UpdateQuery } from 'mongoose';
import { BotStatus } from '../domain/bot.lifecycle';
import { decideTransition, TransitionRequest } from '../domain/transition';
import { TransitionError } from '../errors';
import { DocLocks } from './doc-locks';
import { createInsertBatcher } from './insert-batcher';
import { BotDoc, BotEventDoc, Models } from './models';

/** Bot documents and their events. Every status change is decided by the lifecycle's one rule (domain/transition.ts). */
export interface BotRepository {
  insert(bot: BotDoc): Promise<BotDoc>;
  findById(id: string): Promise<BotDoc | null>;
  findForOwner(ownerId: string, id: string): Promise<BotDoc | null>;
  list(ownerId: string, filter: ListFilter): Promise<BotDoc[]>;
  /** The newest bots of every owner (the operator's fleet page). */
  recent(limit: number): Promise<BotDoc[]>;
  /**
   * Applies a lifecycle request (see domain/transition.ts) and records its status event, in one step per
   * bot. Returns the updated bot, the refusal with the bot as it is, or null when there is no such bot.
   */
  transition(id: string, request: TransitionRequest): Promise<TransitionOutcome | null>;
  /** Sets fields with no status guard (identifiers, timestamps). */
  update(id: string, set: Partial<BotDoc>): Promise<BotDoc | null>;
  appendEvent(botId: string, event: Omit<BotEventDoc, '_id' | 'botId'>): Promise<void>;
  appendEvents(events: Array<Omit<BotEventDoc, '_id' | 'botId'> & { botId: string }>): Promise<void>;
  events(botId: string, limit: number): Promise<BotEventDoc[]>;
  remove(id: string): Promise<void>;
  /** The live index (see LiveBotDoc): marked before a new bot is placed, unmarked once it has ended. */
  markLive(id: string, createdAt: Date): Promise<void>;
  unmarkLive(id: string): Promise<void>;
  /** Every bot in the live index, oldest first. */
  liveBots(): Promise<Array<{ id: string; createdAt: Date }>>;
}

export type TransitionOutcome = { bot: BotDoc; refused?: undefined } | { bot: BotDoc; refused: TransitionError };

export interface ListFilter {
  status?: BotStatus;
  platform?: string;
  limit: number;
  /** Id of the last bot of the previous page; the next page holds older bots. */
  before?: string;
}

export function isObjectId(id: string): boolean {
  return /^[0-9a-f]{24}$/i.test(id);
}

/**
 * Writes to one bot document are serialised through `locks`, and every write is "read by _id, decide, write
 * by _id" under that lock. Both are for FerretDB v1, which neither applies an update atomically nor uses any
 * index but `_id` (a filter with any other field scans the whole collection); see doc-locks.ts.
 */
export function createBotRepository({ Bot, BotEvent, LiveBot }: Models, locks: DocLocks): BotRepository {
  // Inserts from concurrent requests and jobs share round trips (see insert-batcher.ts).
  const botInserts = createInsertBatcher(Bot.collection as unknown as mongo.Collection);
  const eventInserts = createInsertBatcher(BotEvent.collection as unknown as mongo.Collection);
  const liveInserts = createInsertBatcher(LiveBot.collection as unknown as mongo.Collection);
  /**
   * The one write path. A function `decide` sees the bot as it is and returns the update to make (and its
   * event), or a refusal; an update that depends on nothing is written without that read.
   */
  const write = (id: string, decide: Write | ((current: BotDoc) => Write | TransitionError)) =>
    locks.withLock(id, async (): Promise<TransitionOutcome | null> => {
      let decision: Write | TransitionError = decide as Write;
      if (typeof decide === 'function') {
        const current = await Bot.findById(id).lean<BotDoc>();
        if (!current) return null;
        decision = decide(current);
        if (decision instanceof TransitionError) return { bot: current, refused: decision };
      }
      const updated = await Bot.findByIdAndUpdate(id, decision.update, { returnDocument: 'after' }).lean<BotDoc>();
      if (!updated) return null;
      if (decision.event) await eventInserts.insert(toStoredEvent({ botId: id, ...decision.event }));
      return { bot: updated };
    });
  return {
    async insert(bot) {
      await botInserts.insert(bot);
      return bot;
    },
    findById: (id) => (isObjectId(id) ? Bot.findById(id).lean<BotDoc>() : Promise.resolve(null)),
    // By _id alone, then the owner in code: FerretDB v1 scans the collection for any filter but {_id}.
    async findForOwner(ownerId, id) {
      const bot = isObjectId(id) ? await Bot.findById(id).lean<BotDoc>() : null;
      return bot?.ownerId === ownerId ? bot : null;
    },
    recent: (limit) => Bot.find({}).sort({ _id: -1 }).limit(limit).lean<BotDoc[]>(),
    list(ownerId, { status, platform, limit, before }) {
      const query: QueryFilter<BotDoc> = { ownerId };
      if (status) query.status = status;
      if (platform) query.platform = platform;
      if (before) query._id = { $lt: new Types.ObjectId(before) };
      return Bot.find(query).sort({ _id: -1 }).limit(limit).lean<BotDoc[]>();
    },
    async transition(id, request) {
      if (!isObjectId(id)) return null;
      return write(id, (current) => {
        const change = decideTransition(current, request, Date.now());
        if (change instanceof TransitionError) return change;
        const update: UpdateQuery<BotDoc> = { $set: change.set as Partial<BotDoc> };
        if (change.attempt) update.$push = { attempts: change.attempt };
        if (change.exclude) update.$addToSet = { excludedPlatforms: change.exclude };
        return { update, event: { type: 'status', at: change.set.statusChangedAt, ...change.event } };
      });
    },
    async update(id, set) {
      return (await write(id, { update: { $set: set } }))?.bot ?? null;
    },
    async appendEvent(botId, event) {
      await eventInserts.insert(toStoredEvent({ ...event, botId }));
    },
    async appendEvents(events) {
      await Promise.all(events.map((event) => eventInserts.insert(toStoredEvent(event))));
    },
    events: (botId, limit) =>
      BotEvent.find({ botId: new Types.ObjectId(botId) }).sort({ at: 1, _id: 1 }).limit(limit).lean<BotEventDoc[]>(),
    async remove(id) {
      await Bot.deleteOne({ _id: id });
      await BotEvent.deleteMany({ botId: new Types.ObjectId(id) });
      await LiveBot.deleteOne({ _id: id });
    },
    async markLive(id, createdAt) {
      try {
        await liveInserts.insert({ _id: new Types.ObjectId(id), createdAt });
      } catch (error) {
        if ((error as { code?: number }).code !== 11000) throw error; // marked already: a replayed create
      }
    },
    async unmarkLive(id) {
      await LiveBot.collection.deleteOne({ _id: new Types.ObjectId(id) });
    },
    async liveBots() {
      const docs = await LiveBot.collection.find({}).toArray();
      return docs
        .map((doc) => ({ id: String(doc._id), createdAt: doc.createdAt as Date }))
        .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1));
    },
  };
}

interface Write {
  update: UpdateQuery<BotDoc>;
  event?: Omit<BotEventDoc, '_id' | 'botId'>;
}

/** Event data is free-form JSON from bots; it is stored as text since its keys may hold dots or dollars. */
function toStoredEvent({ botId, data, ...event }: Omit<BotEventDoc, '_id' | 'botId'> & { botId: string }) {
  const stored: Record<string, unknown> = { _id: new Types.ObjectId(), botId: new Types.ObjectId(botId), ...event };
  if (data !== undefined) stored.data = JSON.stringify(data);
  return stored;
}
