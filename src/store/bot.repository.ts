import { QueryFilter, Types } from 'mongoose';
import { BotStatus, EndReason, isTerminal, statusesAllowedBefore } from '../domain/bot.lifecycle';
import { AttemptDoc, BotDoc, BotEventDoc, Models } from './models';

/** Bot documents and their events. Every status change is one conditional update, so concurrent writers agree. */
export interface BotRepository {
  insert(bot: BotDoc): Promise<BotDoc>;
  findById(id: string): Promise<BotDoc | null>;
  findManyByIds(ids: string[], projection?: Record<string, 0 | 1>): Promise<BotDoc[]>;
  findForOwner(ownerId: string, id: string): Promise<BotDoc | null>;
  list(ownerId: string, filter: ListFilter): Promise<BotDoc[]>;
  /**
   * Moves a bot to `to` if the lifecycle allows it from its current status. Returns the updated document,
   * or null when the bot does not exist or its current status does not allow the move.
   */
  transition(id: string, to: BotStatus, change?: TransitionChange): Promise<BotDoc | null>;
  update(id: string, set: Partial<BotDoc>, onlyIfStatus?: BotStatus[]): Promise<BotDoc | null>;
  /** Appends an attempt; `assignTo` also records the platform the bot was just assigned to. */
  recordAttempt(id: string, attempt: AttemptDoc, options?: { assignTo?: string }): Promise<void>;
  /**
   * The fleet's one backward move: a bot whose attempt on `platform` failed or timed out before any
   * container ran goes back to QUEUED, with that platform excluded from its later attempts.
   */
  requeue(id: string, platform: string, attempt: AttemptDoc): Promise<BotDoc | null>;
  appendEvent(botId: string, event: Omit<BotEventDoc, '_id' | 'botId'>): Promise<void>;
  events(botId: string, limit: number): Promise<BotEventDoc[]>;
  remove(id: string): Promise<void>;
}

export interface ListFilter {
  status?: BotStatus;
  platform?: string;
  limit: number;
  /** Id of the last bot of the previous page; the next page holds older bots. */
  before?: string;
}

export interface TransitionChange {
  endReason?: EndReason;
  set?: Partial<BotDoc>;
  at?: Date;
}

export function isObjectId(id: string): boolean {
  return /^[0-9a-f]{24}$/i.test(id);
}

export function createBotRepository({ Bot, BotEvent }: Models): BotRepository {
  return {
    async insert(bot) {
      await Bot.collection.insertOne(bot as never);
      return bot;
    },
    findById: (id) => (isObjectId(id) ? Bot.findById(id).lean<BotDoc>() : Promise.resolve(null)),
    findManyByIds: (ids, projection) =>
      Bot.find({ _id: { $in: ids.filter(isObjectId) } }, projection).lean<BotDoc[]>(),
    findForOwner: (ownerId, id) =>
      isObjectId(id) ? Bot.findOne({ _id: id, ownerId }).lean<BotDoc>() : Promise.resolve(null),
    list(ownerId, { status, platform, limit, before }) {
      const query: QueryFilter<BotDoc> = { ownerId };
      if (status) query.status = status;
      if (platform) query.platform = platform;
      if (before) query._id = { $lt: new Types.ObjectId(before) };
      return Bot.find(query).sort({ _id: -1 }).limit(limit).lean<BotDoc[]>();
    },
    async transition(id, to, change = {}) {
      if (!isObjectId(id)) return null;
      const at = change.at ?? new Date();
      const set: Partial<BotDoc> = { ...change.set, status: to };
      if (isTerminal(to)) {
        set.endedAt = at;
        if (change.endReason) set.endReason = change.endReason;
      }
      return Bot.findOneAndUpdate(
        { _id: id, status: { $in: statusesAllowedBefore(to) } },
        { $set: set, $inc: { statusVersion: 1 } },
        { returnDocument: 'after' },
      ).lean<BotDoc>();
    },
    update(id, set, onlyIfStatus) {
      const query: QueryFilter<BotDoc> = { _id: id };
      if (onlyIfStatus) query.status = { $in: onlyIfStatus };
      return Bot.findOneAndUpdate(query, { $set: set }, { returnDocument: 'after' }).lean<BotDoc>();
    },
    async recordAttempt(id, attempt, options = {}) {
      const update: Record<string, unknown> = { $push: { attempts: attempt } };
      if (options.assignTo) update.$set = { platform: options.assignTo };
      await Bot.updateOne({ _id: id }, update);
    },
    requeue(id, platform, attempt) {
      return Bot.findOneAndUpdate(
        { _id: id, platform, status: { $in: ['QUEUED', 'DEPLOYING'] } },
        {
          $set: { status: 'QUEUED', platform: null, platformIdentifier: null, queuedAt: attempt.at },
          $push: { attempts: attempt },
          $addToSet: { excludedPlatforms: platform },
          $inc: { statusVersion: 1 },
        },
        { returnDocument: 'after' },
      ).lean<BotDoc>();
    },
    async appendEvent(botId, { data, ...event }) {
      // Event data is the bot's free-form JSON; kept as text since its keys may hold dots or dollars.
      const stored = { _id: new Types.ObjectId(), botId: new Types.ObjectId(botId), ...event } as Record<string, unknown>;
      if (data !== undefined) stored.data = JSON.stringify(data);
      await BotEvent.collection.insertOne(stored as never);
    },
    events: (botId, limit) =>
      BotEvent.find({ botId: new Types.ObjectId(botId) }).sort({ _id: 1 }).limit(limit).lean<BotEventDoc[]>(),
    async remove(id) {
      await Bot.deleteOne({ _id: id });
      await BotEvent.deleteMany({ botId: new Types.ObjectId(id) });
    },
  };
}
