import { QueryFilter, Types, UpdateQuery } from 'mongoose';
import { BotStatus, canTransition, EndReason, isTerminal } from '../domain/bot.lifecycle';
import { DocLocks } from './doc-locks';
import { AttemptDoc, BotDoc, BotEventDoc, Models } from './models';

/** Bot documents and their events. Every status change is one conditional update, so concurrent writers agree. */
export interface BotRepository {
  insert(bot: BotDoc): Promise<BotDoc>;
  findById(id: string): Promise<BotDoc | null>;
  findForOwner(ownerId: string, id: string): Promise<BotDoc | null>;
  list(ownerId: string, filter: ListFilter): Promise<BotDoc[]>;
  /** The newest bots of every owner (the operator's fleet page). */
  recent(limit: number): Promise<BotDoc[]>;
  /**
   * Moves a bot to `to` if the lifecycle allows it from its current status. Returns the updated document,
   * or null when the bot does not exist or its current status does not allow the move.
   */
  transition(id: string, to: BotStatus, change?: TransitionChange): Promise<BotDoc | null>;
  /** Sets fields with no status guard (identifiers, timestamps). */
  update(id: string, set: Partial<BotDoc>): Promise<BotDoc | null>;
  /**
   * The fleet's one backward move: a bot whose attempt on `platform` failed, timed out or found it full
   * before any container ran goes back to QUEUED; a failed or timed-out platform is recorded as excluded.
   */
  requeue(id: string, platform: string, attempt: AttemptDoc): Promise<BotDoc | null>;
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

export interface ListFilter {
  status?: BotStatus;
  platform?: string;
  limit: number;
  /** Id of the last bot of the previous page; the next page holds older bots. */
  before?: string;
}

export interface TransitionChange {
  /** The end reason of a terminal move, or a function of the bot as it is just before the move. */
  endReason?: EndReason | ((current: BotDoc) => EndReason | undefined);
  set?: Partial<BotDoc>;
  /** What the status event records besides the status; written in the same locked step. */
  event?: { reason?: string; message?: string; data?: Record<string, unknown> };
}

export function isObjectId(id: string): boolean {
  return /^[0-9a-f]{24}$/i.test(id);
}

/**
 * Writes to one bot document are serialised through `locks`, and every guarded write is "read by _id, check,
 * write by _id" under that lock. Both are for FerretDB v1, which neither applies an update atomically nor
 * uses any index but `_id` (a filter with any other field scans the whole collection); see doc-locks.ts.
 */
export function createBotRepository({ Bot, BotEvent, LiveBot }: Models, locks: DocLocks): BotRepository {
  const guardedUpdate = (id: string, allowed: (bot: BotDoc) => boolean, update: UpdateQuery<BotDoc>) =>
    locks.withLock(id, async () => {
      const current = await Bot.findById(id).lean<BotDoc>();
      if (!current || !allowed(current)) return null;
      return Bot.findByIdAndUpdate(id, update, { returnDocument: 'after' }).lean<BotDoc>();
    });
  /**
   * A status change and its event, in one locked step. Event times per bot strictly increase, so the event
   * list orders them the way they happened even when they come from several processes.
   */
  const statusChange = (
    id: string,
    allowed: (bot: BotDoc) => boolean,
    build: (at: Date, current: BotDoc) => { update: UpdateQuery<BotDoc>; event: { status: BotStatus; reason?: string; message?: string; data?: Record<string, unknown> } },
  ) =>
    locks.withLock(id, async () => {
      const current = await Bot.findById(id).lean<BotDoc>();
      if (!current || !allowed(current)) return null;
      const previous = current.statusChangedAt?.getTime() ?? 0;
      const at = new Date(Math.max(Date.now(), previous + 1));
      const { update, event } = build(at, current);
      const updated = await Bot.findByIdAndUpdate(id, update, { returnDocument: 'after' }).lean<BotDoc>();
      if (updated) {
        await BotEvent.collection.insertOne(
          toStoredEvent({ botId: id, type: 'status', at, ...event, data: { ...event.data, version: updated.statusVersion } }) as never,
        );
      }
      return updated;
    });
  return {
    async insert(bot) {
      await Bot.collection.insertOne(bot as never);
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
    async transition(id, to, change = {}) {
      if (!isObjectId(id)) return null;
      return statusChange(id, (bot) => canTransition(bot.status, to), (at, current) => {
        const set: Partial<BotDoc> = { ...change.set, status: to, statusChangedAt: at };
        if (isTerminal(to)) {
          set.endedAt = at;
          const endReason = typeof change.endReason === 'function' ? change.endReason(current) : change.endReason;
          if (endReason) set.endReason = endReason;
        }
        const event = { status: to, ...change.event, reason: change.event?.reason ?? set.endReason };
        return { update: { $set: set, $inc: { statusVersion: 1 } }, event };
      });
    },
    update(id, set) {
      // One write by _id, under the lock so it cannot interleave with a guarded change of the same bot.
      return locks.withLock(id, () => Bot.findByIdAndUpdate(id, { $set: set }, { returnDocument: 'after' }).lean<BotDoc>());
    },
    requeue(id, platform, attempt) {
      return statusChange(
        id,
        (bot) => (bot.platform === platform || bot.platform === null) && ['QUEUED', 'DEPLOYING'].includes(bot.status),
        (at) => ({
          update: {
            $set: { status: 'QUEUED', platform: null, platformIdentifier: null, statusChangedAt: at },
            $push: { attempts: attempt },
            ...(attempt.outcome === 'full' ? {} : { $addToSet: { excludedPlatforms: platform } }),
            $inc: { statusVersion: 1 },
          },
          event: { status: 'QUEUED', reason: attempt.reason, data: { source: 'fleet' } },
        }),
      );
    },
    async appendEvent(botId, event) {
      await BotEvent.collection.insertOne(toStoredEvent({ ...event, botId }) as never);
    },
    async appendEvents(events) {
      if (events.length) await BotEvent.collection.insertMany(events.map(toStoredEvent) as never[]);
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
        await LiveBot.collection.insertOne({ _id: new Types.ObjectId(id), createdAt });
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

/** Event data is free-form JSON from bots; it is stored as text since its keys may hold dots or dollars. */
function toStoredEvent({ botId, data, ...event }: Omit<BotEventDoc, '_id' | 'botId'> & { botId: string }) {
  const stored: Record<string, unknown> = { _id: new Types.ObjectId(), botId: new Types.ObjectId(botId), ...event };
  if (data !== undefined) stored.data = JSON.stringify(data);
  return stored;
}
