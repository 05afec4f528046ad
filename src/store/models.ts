import { createHash } from 'node:crypto';
import { Connection, Model, Schema, Types } from 'mongoose';
import { BOT_STATUSES, BotStatus, END_REASONS, EndReason, MeetingPlatform } from '../domain/bot.lifecycle';
import { Attempt } from '../domain/transition';
import { logger } from '../logger';

/** MongoDB documents. Every query the API makes has an index below (the sweeps read Redis, not these). */

export interface MeetingDoc {
  platform: MeetingPlatform;
  url?: string;
  meetingId?: string;
  password?: string;
  organizerId?: string;
  tenantId?: string;
}

export interface MetadataEntry {
  key: string;
  value: string;
}

export type AttemptDoc = Attempt;

/** Who spoke when, as a bot that recorded the meeting reports it. */
export interface SpeakerTimeframe {
  speakerName: string;
  start: number | string;
  end: number | string;
}

export interface BotDoc {
  _id: Types.ObjectId;
  /**
   * The bot's number, unique in the fleet and given at creation: what bot images that parse `BOT_ID` as a
   * number are told, and another name of the bot wherever the API takes an id. Absent on older bots.
   */
  number?: number;
  ownerId: string;
  status: BotStatus;
  meeting: MeetingDoc;
  displayName: string;
  imageUrl?: string;
  joinAt?: Date;
  maxDurationMs?: number;
  recording: boolean;
  automaticLeave?: Record<string, number>;
  callbackUrl?: string;
  /** Stored as pairs: MongoDB-compatible servers such as FerretDB refuse keys with dots ("sim.durationMs"). */
  metadata: MetadataEntry[];
  /** Deployment platform of the current or last attempt, null before placement. */
  platform: string | null;
  platformIdentifier: string | null;
  /**
   * The start try on `platform` now (0: the first deploy there; one more for each retry of a failed start),
   * which names its deployment. Set back to 0 by each claim.
   */
  startTry?: number;
  /** Platforms this bot must not be offered again (deploy failed or its queue wait timed out). */
  excludedPlatforms: string[];
  attempts: AttemptDoc[];
  createdAt: Date;
  queuedAt?: Date;
  /** When the fleet claimed the bot for a deploy (QUEUED → DEPLOYING); DEPLOY_TIMEOUT counts from here. */
  deployingAt?: Date;
  deployedAt?: Date;
  endedAt?: Date;
  endReason?: EndReason;
  lastHeartbeatAt?: Date;
  leaveRequestedAt?: Date;
  recordingKey?: string;
  speakerTimeframes?: SpeakerTimeframe[];
  /** The log level the bot's owner asked the bot to log at (the upstream heartbeat answer's `logLevel`). */
  logLevel?: string;
  /** Incremented on every status change; orders webhooks and events per bot. */
  statusVersion: number;
  statusChangedAt?: Date;
}

export interface BotEventDoc {
  _id: Types.ObjectId;
  botId: Types.ObjectId;
  type: string;
  status?: BotStatus;
  reason?: string;
  message?: string;
  data?: unknown;
  at: Date;
  /** Position in the bot's change stream (see the schema below). */
  seq?: string;
}

/**
 * One small document per bot that has not ended, removed when it ends: the index recovery reads to rebuild
 * Redis from, so its cost follows the live bots, not every bot ever made (FerretDB uses no secondary index,
 * so "bots by status" would scan them all).
 */
export interface LiveBotDoc {
  _id: Types.ObjectId;
  createdAt: Date;
}

export interface ApiKeyDoc {
  /** SHA-256 of the key: lookups go by _id, the one filter every MongoDB-compatible server indexes. */
  _id: string;
  owner: string;
  createdAt: Date;
}

export interface IdempotencyDoc {
  /** idempotencyRecordId(owner, key): lookups go by _id, the one filter every MongoDB-compatible server indexes. */
  _id: string;
  owner: string;
  key: string;
  requestHash: string;
  botId: Types.ObjectId;
  createdAt: Date;
}

const botSchema = new Schema<BotDoc>(
  {
    number: Number,
    ownerId: { type: String, required: true },
    status: { type: String, enum: BOT_STATUSES, required: true },
    meeting: { type: Schema.Types.Mixed, required: true },
    displayName: { type: String, required: true },
    imageUrl: String,
    joinAt: Date,
    maxDurationMs: Number,
    recording: { type: Boolean, default: false },
    automaticLeave: Schema.Types.Mixed,
    callbackUrl: String,
    metadata: { type: [new Schema({ key: String, value: String }, { _id: false })], default: [] },
    platform: { type: String, default: null },
    platformIdentifier: { type: String, default: null },
    startTry: Number,
    excludedPlatforms: { type: [String], default: [] },
    attempts: {
      type: [new Schema({ platform: String, outcome: String, reason: String, at: Date }, { _id: false })],
      default: [],
    },
    createdAt: { type: Date, required: true },
    queuedAt: Date,
    deployingAt: Date,
    deployedAt: Date,
    endedAt: Date,
    endReason: { type: String, enum: END_REASONS },
    lastHeartbeatAt: Date,
    leaveRequestedAt: Date,
    recordingKey: String,
    speakerTimeframes: Schema.Types.Mixed,
    logLevel: String,
    statusVersion: { type: Number, default: 0 },
    statusChangedAt: Date,
  },
  { collection: 'bots', versionKey: false, minimize: false },
);
// Client listing, newest first, per owner and optional filters.
botSchema.index({ ownerId: 1, _id: -1 });
botSchema.index({ ownerId: 1, status: 1, _id: -1 });
botSchema.index({ ownerId: 1, platform: 1, _id: -1 });
// A number's bot when Redis no longer names it, and the highest number given (bot-numbers.ts).
botSchema.index({ number: 1 });
// The bots changed around a loss of Redis's last writes (BotRepository.repairLostWrites; `changedAt` is the
// flusher's). The sweeps read Redis due-sets and recovery the live index, so no other query reaches this collection.
botSchema.index({ changedAt: 1 });

const botEventSchema = new Schema<BotEventDoc>(
  {
    botId: { type: Schema.Types.ObjectId, required: true },
    type: { type: String, required: true },
    status: String,
    reason: String,
    message: String,
    data: String,
    at: { type: Date, required: true },
    /** Position in the bot's change stream (flusher.ts `sequenceOf`); orders events of the same millisecond. */
    seq: String,
  },
  { collection: 'bot_events', versionKey: false },
);
// A bot's events in the order they happened (repository `events`): by time, then as Redis took them.
botEventSchema.index({ botId: 1, at: 1, seq: 1 });

const liveBotSchema = new Schema<LiveBotDoc>(
  { createdAt: { type: Date, required: true } },
  { collection: 'live_bots', versionKey: false },
);

const apiKeySchema = new Schema<ApiKeyDoc>(
  {
    _id: { type: String, required: true },
    owner: { type: String, required: true },
    createdAt: { type: Date, required: true },
  },
  { collection: 'api_keys', versionKey: false },
);

const idempotencySchema = new Schema<IdempotencyDoc>(
  {
    _id: { type: String, required: true },
    owner: { type: String, required: true },
    key: { type: String, required: true },
    requestHash: { type: String, required: true },
    botId: { type: Schema.Types.ObjectId, required: true },
    createdAt: { type: Date, required: true },
  },
  { collection: 'idempotency_keys', versionKey: false },
);
/** A key names its bot this long after the create that took it. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;

/** One record per (owner, Idempotency-Key); a hash so keys of any length and charset fit an _id. */
export const idempotencyRecordId = (owner: string, key: string) =>
  createHash('sha256').update(owner).update('\0').update(key).digest('hex');

export interface Models {
  Bot: Model<BotDoc>;
  BotEvent: Model<BotEventDoc>;
  LiveBot: Model<LiveBotDoc>;
  ApiKey: Model<ApiKeyDoc>;
  Idempotency: Model<IdempotencyDoc>;
}

/** Registers the models on a connection and makes sure their collections and indexes exist. */
export async function createModels(connection: Connection): Promise<Models> {
  const models: Models = {
    Bot: connection.model<BotDoc>('Bot', botSchema),
    BotEvent: connection.model<BotEventDoc>('BotEvent', botEventSchema),
    LiveBot: connection.model<LiveBotDoc>('LiveBot', liveBotSchema),
    ApiKey: connection.model<ApiKeyDoc>('ApiKey', apiKeySchema),
    Idempotency: connection.model<IdempotencyDoc>('Idempotency', idempotencySchema),
  };
  for (const model of Object.values(models) as Model<unknown>[]) {
    await model.createCollection().catch(ignoreAlreadyExists);
    await model.createIndexes();
  }
  // A record is kept while its key is honoured: then MongoDB's TTL monitor deletes it (within a minute or so).
  // FerretDB 1.x implements no TTL index: there its expired records stay (restores skip them), the rest works.
  await models.Idempotency.collection
    .createIndex({ createdAt: 1 }, { expireAfterSeconds: IDEMPOTENCY_WINDOW_MS / 1000 })
    .catch((error: Error & { code?: number }) => {
      if (error.code !== NOT_IMPLEMENTED) throw error;
      logger.warn('idempotency_keys: this server implements no TTL index; expired records are kept', {
        error: error.message,
      });
    });
  return models;
}

const NOT_IMPLEMENTED = 238;

function ignoreAlreadyExists(error: Error & { code?: number; codeName?: string }): void {
  if (error.code !== 48 && error.codeName !== 'NamespaceExists') throw error;
}
