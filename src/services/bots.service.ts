import { createHash } from 'node:crypto';
import { Types } from 'mongoose';
import { BotStatus, EndReason, isTerminal, LIVE_STATUSES, MeetingPlatform } from '../domain/bot.lifecycle';
import {
  ConflictError,
  GoneError,
  IdempotencyConflictError,
  NotFoundError,
  TransitionError,
  UnavailableError,
  ValidationError,
} from '../errors';
import { logger } from '../logger';
import { metrics } from '../metrics';
import { Placement } from '../placement/placement.service';
import { BotChat } from '../store/bot-chat';
import { BotLogs, LogEntry, LogLevel } from '../store/bot-logs';
import { BOT_NUMBER_PATTERN, BotNumbers } from '../store/bot-numbers';
import { metadataFromRecord, toBotConfig, toBotJson, toEventJson, toImageConfig } from '../store/bot.mapper';
import { BotRepository, ClaimTakenError } from '../store/bot.repository';
import { IdempotencyKeys, IdempotencyRecord } from '../store/idempotency-keys';
import { LiveState } from '../store/live-state';
import { BotDoc, idempotencyRecordId, SpeakerTimeframe } from '../store/models';
import { RecordingLinks } from '../recordings/recording-links';
import { ScreenshotInfo, ScreenshotStore } from '../recordings/screenshots';
import { DestinationCheck } from '../webhooks/destination';
import { fromImageStatus, ImageStatus } from '../domain/image-status';
import { Lifecycle } from './lifecycle.service';

/** What clients and bots can ask of the fleet; the API's routes are thin wrappers around these. */
export interface CreateBotInput {
  meeting: BotDoc['meeting'] & { platform: MeetingPlatform };
  displayName: string;
  imageUrl?: string;
  joinAt?: Date;
  maxDurationMs?: number;
  recording: boolean;
  automaticLeave?: Record<string, number>;
  callbackUrl?: string;
  metadata: Record<string, string>;
}

export interface StatusReport {
  status: BotStatus;
  reason?: EndReason;
  message?: string;
  recordingKey?: string;
  speakerTimeframes?: SpeakerTimeframe[];
}

export interface BotsServiceDeps {
  repo: BotRepository;
  idempotencyKeys: IdempotencyKeys;
  lifecycle: Lifecycle;
  placement: Placement;
  liveState: LiveState;
  numbers: BotNumbers;
  logs: BotLogs;
  chat: BotChat;
  checkDestination: DestinationCheck;
  /** Null when no S3 bucket is configured. */
  recordingLinks: RecordingLinks | null;
  /** Null when no S3 bucket is configured. */
  screenshots: ScreenshotStore | null;
  heartbeatIntervalMs: number;
  leaveGraceMs: number;
}

/** An Idempotency-Key a create takes with its bot: its record's id, and the record. */
interface KeyTaken {
  recordId: string;
  record: IdempotencyRecord;
}

export function createBotsService(deps: BotsServiceDeps) {
  const { repo, lifecycle, placement, liveState, idempotencyKeys } = deps;

  /** The bot as clients see it; `knownPosition`, its place in the queue when the caller just queued it. */
  const present = async (bot: BotDoc, knownPosition?: number) => {
    const [position, heartbeat, recording] = await Promise.all([
      bot.status !== 'QUEUED' ? null : (knownPosition ?? placement.position(String(bot._id))),
      LIVE_STATUSES.includes(bot.status) ? liveState.lastHeartbeat(String(bot._id)) : Promise.resolve(null),
      bot.recordingKey && deps.recordingLinks ? deps.recordingLinks.link(bot.recordingKey) : Promise.resolve(null),
    ]);
    const json = toBotJson(bot, position);
    json.recordingUrl = recording?.url ?? null;
    if (heartbeat && (!bot.lastHeartbeatAt || heartbeat > bot.lastHeartbeatAt))
      json.lastHeartbeatAt = heartbeat.toISOString();
    return json;
  };

  /**
   * A callbackUrl the fleet may not call is a 400 naming it, before anything is written. A host name that
   * does not resolve yet is accepted: each delivery checks its addresses again, and retries until it resolves
   * (or records why it gave up).
   */
  const assertCallbackAllowed = async (callbackUrl: string | undefined) => {
    if (!callbackUrl) return;
    const destination = await deps.checkDestination(callbackUrl);
    if (!destination.allowed && !destination.unresolved) {
      throw new ValidationError(`callbackUrl ${destination.reason}`, [
        { path: 'callbackUrl', message: destination.reason },
      ]);
    }
  };

  /** The bot a bot token speaks for, while it lives: once it has ended its token is refused with 410. */
  const liveBot = async (botId: string) => {
    const bot = await repo.findById(botId);
    if (!bot) throw new NotFoundError(`bot ${botId} not found`);
    if (isTerminal(bot.status)) throw new GoneError(`bot ${botId} has ended (${bot.status})`);
    return bot;
  };

  const ownBot = async (owner: string, botId: string) => {
    const bot = await repo.findForOwner(owner, botId);
    if (!bot) throw new NotFoundError(`bot ${botId} not found`);
    return bot;
  };

  /**
   * Records the bot (if absent), taking `key` in the same step, and hands it to placement; 503 with nothing
   * kept if either cannot be done. A key held already rejects with ClaimTakenError, nothing written.
   */
  const insertAndPlace = async (owner: string, botId: Types.ObjectId, input: CreateBotInput, key?: KeyTaken) => {
    const now = new Date();
    const scheduled = input.joinAt !== undefined && input.joinAt.getTime() > now.getTime();
    const number = await deps.numbers.next().catch((error) => {
      logger.error('could not number a new bot', { botId: String(botId), error: String(error) });
      throw new UnavailableError('the bot store is unavailable; nothing was created, retry later');
    });
    const doc: BotDoc = {
      _id: botId,
      number,
      ownerId: owner,
      status: scheduled ? 'SCHEDULED' : 'QUEUED',
      ...input,
      metadata: metadataFromRecord(input.metadata),
      platform: null,
      platformIdentifier: null,
      excludedPlatforms: [],
      attempts: [],
      createdAt: now,
      queuedAt: scheduled ? undefined : now,
      statusVersion: 0,
      statusChangedAt: now,
    };
    const claim = key && idempotencyKeys.claim({ _id: key.recordId, ...key.record });
    try {
      // The flusher marks it in the live index as it writes the new bot (see BotRepository.insert).
      await repo.insert(doc, { type: 'status', status: doc.status, at: now, data: { source: 'client' } }, claim);
    } catch (error) {
      if (error instanceof ClaimTakenError) throw error;
      if ((error as { code?: number }).code === 11000)
        return { bot: (await repo.findById(String(botId)))!, created: false };
      logger.error('could not record a new bot', { botId: String(botId), error: String(error) });
      throw new UnavailableError('the bot store (Redis) is unavailable; nothing was created, retry later');
    }
    let position: number | undefined;
    try {
      if (scheduled) await placement.schedule(String(botId), input.joinAt!);
      else position = await placement.enqueue(doc);
    } catch (error) {
      logger.error('could not queue a new bot; removing it', { botId: String(botId), error: String(error) });
      // frees the key too; MongoDB deletes the bot and the key's record when the flusher writes the removal
      await repo.remove(String(botId), claim?.key).catch((removeError: unknown) =>
        logger.error('could not remove the bot whose create failed', {
          botId: String(botId),
          error: String(removeError),
        }),
      );
      throw new UnavailableError('the placement queue is unavailable; nothing was created, retry later');
    }
    return { bot: doc, created: true, position };
  };

  const reportStatus = async (botId: string, report: StatusReport) => {
    const set: Partial<BotDoc> = {};
    if (report.recordingKey) set.recordingKey = report.recordingKey;
    if (report.speakerTimeframes) set.speakerTimeframes = report.speakerTimeframes;
    try {
      const updated = await lifecycle.transition(botId, report.status, {
        // without a reason the lifecycle decides from the bot as it is: LEFT only if a client asked it to leave
        reason: report.reason,
        message: report.message,
        set,
        source: 'bot',
      });
      return { status: updated.status };
    } catch (error) {
      if (!(error instanceof TransitionError)) throw error;
      // A retried report of the live status the bot already has is answered, not refused; what it carries
      // besides the status (a recording key) is kept.
      if (error.from === report.status && !isTerminal(report.status)) {
        if (Object.keys(set).length > 0) await repo.update(botId, set);
        return { status: report.status };
      }
      if (isTerminal(error.from as BotStatus)) throw new GoneError(`bot ${botId} has ended (${error.from})`);
      throw error;
    }
  };

  /** A bot that is live and has not been asked to leave: what a bot image (re)starting may join with. */
  const joinableBot = async (botId: string) => {
    const bot = await liveBot(botId);
    if (bot.status === 'LEAVING')
      throw new GoneError(`bot ${bot.number ?? botId} has already finished (status: ${bot.status})`);
    return bot;
  };

  /**
   * One settling of an Idempotency-Key, in Redis alone: the key is taken in the step that creates its bot, so
   * of concurrent creates (in any process) exactly one wins; the others answer its bot, or 409 for another
   * body.
   */
  const createOnce = async (
    owner: string,
    input: CreateBotInput,
    idempotencyKey: string,
    requestHash: string,
    recordId: string,
  ) => {
    for (let round = 0; round < 3; round++) {
      const record = await idempotencyKeys.read(recordId);
      if (!record) {
        const botId = new Types.ObjectId();
        const mine = { owner, key: idempotencyKey, requestHash, botId: String(botId), createdAt: Date.now() };
        try {
          const { bot, created, position } = await insertAndPlace(owner, botId, input, { recordId, record: mine });
          return { bot: await present(bot, position), created };
        } catch (error) {
          if (error instanceof ClaimTakenError) continue; // another create won the key: answer as it did
          throw error;
        }
      }
      if (record.requestHash !== requestHash) {
        throw new IdempotencyConflictError('this Idempotency-Key was used with a different request body');
      }
      const existing = await repo.findById(record.botId);
      if (existing) return { bot: await present(existing), created: false };
      // Its bot was undone (a failed placement) after the key was read: made again under the same id.
      const { bot, created, position } = await insertAndPlace(owner, new Types.ObjectId(record.botId), input);
      return { bot: await present(bot, position), created };
    }
    throw new UnavailableError('could not settle the Idempotency-Key; retry');
  };

  return {
    /** The bot id an id or a bot number (as a URL may give it) names; anything else is returned as it is. */
    async resolveId(idOrNumber: string) {
      if (!BOT_NUMBER_PATTERN.test(idOrNumber)) return idOrNumber;
      return (await deps.numbers.resolve(Number(idOrNumber))) ?? idOrNumber;
    },

    async create(owner: string, input: CreateBotInput, idempotencyKey?: string) {
      await assertCallbackAllowed(input.callbackUrl);
      if (!idempotencyKey) {
        const { bot, position } = await insertAndPlace(owner, new Types.ObjectId(), input);
        return { bot: await present(bot, position), created: true };
      }
      const requestHash = createHash('sha256').update(stableJson(input)).digest('hex');
      const recordId = idempotencyRecordId(owner, idempotencyKey);
      try {
        return await createOnce(owner, input, idempotencyKey, requestHash, recordId);
      } catch (error) {
        // Only after Redis lost its data does a key need MongoDB (its records are put back from there first).
        if (error instanceof Error && error.name.startsWith('Mongo'))
          throw new UnavailableError(`cannot settle the Idempotency-Key: MongoDB does not answer (${error.message})`);
        throw error;
      }
    },

    async get(owner: string, botId: string) {
      return present(await ownBot(owner, botId));
    },

    async list(owner: string, filter: { status?: BotStatus; platform?: string; limit: number; cursor?: string }) {
      const bots = await repo.list(owner, { ...filter, before: filter.cursor, limit: filter.limit + 1 });
      const page = bots.slice(0, filter.limit);
      return {
        data: await Promise.all(page.map((bot) => present(bot))),
        nextCursor: bots.length > filter.limit ? String(page[page.length - 1]._id) : null,
      };
    },

    /** A short-lived link to the recording the bot reported; 404 while there is none. */
    async recording(owner: string, botId: string) {
      const bot = await ownBot(owner, botId);
      if (!bot.recordingKey) throw new NotFoundError(`bot ${botId} has no recording`);
      if (!deps.recordingLinks) throw new NotFoundError('recordings are off: set S3_BUCKET_NAME');
      return deps.recordingLinks.link(bot.recordingKey);
    },

    /** The screenshots the bot uploaded, oldest first, each with a short-lived link; 404 without S3. */
    async screenshots(owner: string, botId: string, page: { limit: number; cursor?: string }) {
      await ownBot(owner, botId);
      if (!deps.screenshots) throw new NotFoundError('screenshots are off: set S3_BUCKET_NAME');
      return deps.screenshots.list(botId, page);
    },

    /** What the operator's fleet page shows of the newest bots, whoever owns them. */
    async recentForOperator(limit: number) {
      return (await repo.recent(limit)).map((bot) => ({
        id: String(bot._id),
        status: bot.status,
        platform: bot.platform,
        meetingPlatform: bot.meeting.platform,
        createdAt: bot.createdAt.toISOString(),
        endReason: bot.endReason ?? null,
      }));
    },

    async events(owner: string, botId: string) {
      await ownBot(owner, botId);
      return { data: (await repo.events(botId, 1000)).map(toEventJson) };
    },

    /** Ends the bot now (CANCELLED): withdrawn from queues, its container stopped. Idempotent. */
    async cancel(owner: string, botId: string) {
      // One step: the owner is checked on the bot as it is changed, and a bot that already ended is answered as it is.
      const outcome = await lifecycle.transitionOrRefusal(botId, 'ENDED', {
        reason: 'CANCELLED',
        source: 'client',
        ownerId: owner,
      });
      if (!outcome) throw new NotFoundError(`bot ${botId} not found`);
      return present(outcome.bot);
    },

    /** A live bot goes LEAVING and learns it on its next heartbeat; one not deployed yet is cancelled. */
    async leave(owner: string, botId: string) {
      const bot = await ownBot(owner, botId);
      if (bot.status === 'LEAVING') return present(bot);
      if (bot.status === 'SCHEDULED' || bot.status === 'QUEUED') {
        const ended = await lifecycle.tryTransition(botId, 'ENDED', { reason: 'CANCELLED', source: 'client' });
        return present(ended ?? (await ownBot(owner, botId)));
      }
      const now = new Date();
      const leaving = await lifecycle.transition(botId, 'LEAVING', {
        source: 'client',
        set: { leaveRequestedAt: now },
      });
      await liveState.requestLeave(botId, now.getTime() + deps.leaveGraceMs);
      return present(leaving);
    },

    /** The level the bot is asked to log at, answered with its heartbeats; null gives the bot its own default. */
    /** The level the bot is asked to log at; 410 once it ended (its live state, where the level lives, is gone). */
    async setLogLevel(owner: string, botId: string, logLevel: LogLevel | null) {
      const bot = await ownBot(owner, botId);
      if (isTerminal(bot.status)) throw new GoneError(`bot ${botId} has ended (${bot.status})`);
      const updated = await repo.update(botId, { logLevel: logLevel ?? undefined });
      await liveState.setLogLevel(botId, logLevel);
      return present(updated!);
    },

    /** Queues a chat message for the bot to post; 409 when CHAT_BOUNDS.queued already wait, 410 once it ended. */
    async sendChat(owner: string, botId: string, messageText: string) {
      const bot = await ownBot(owner, botId);
      if (isTerminal(bot.status)) throw new GoneError(`bot ${botId} has ended (${bot.status})`);
      const sentAt = new Date().toISOString();
      if (!(await deps.chat.send(botId, { messageText, userId: owner, sentAt }))) {
        throw new ConflictError(
          `bot ${botId} already has the most chat messages that may wait; retry once it took some`,
        );
      }
      return { queued: true, sentAt };
    },

    async logs(owner: string, botId: string, query: { cursor?: string; limit: number; level?: LogLevel }) {
      await ownBot(owner, botId);
      return deps.logs.read(botId, query);
    },

    // ---- bot side ----

    async config(botId: string) {
      return toBotConfig(await liveBot(botId), deps.heartbeatIntervalMs);
    },

    /** The config in the shape bot images of the upstream protocol read; refused once the bot is leaving. */
    async imageConfig(botId: string) {
      return toImageConfig(await joinableBot(botId));
    },

    /** One Redis round trip: a bot that ended within the last 24 h is refused from Redis alone. */
    async heartbeat(botId: string) {
      const beat = await liveState.heartbeat(botId);
      metrics.heartbeats.inc();
      if (beat.ended) throw new GoneError(`bot ${botId} has ended`);
      return { shouldLeave: beat.shouldLeave, logLevel: beat.logLevel };
    },

    async takeChat(botId: string) {
      await liveBot(botId);
      return deps.chat.take(botId);
    },

    async streamLogs(botId: string, entries: LogEntry[]) {
      await liveBot(botId);
      return deps.logs.append(botId, entries);
    },

    reportStatus,

    /**
     * A status report of an upstream bot image (see domain/image-status.ts). An image that restarted joins
     * again from the start, so a report behind the bot's status is answered with the status the bot has.
     */
    async reportImageStatus(
      botId: string,
      report: { status: ImageStatus; recording?: string; speakerTimeframes?: SpeakerTimeframe[] },
    ) {
      const current = (await liveBot(botId)).status;
      const ours = fromImageStatus(report.status, current);
      if (!ours) return { status: current };
      try {
        return await reportStatus(botId, {
          ...ours,
          recordingKey: report.recording,
          speakerTimeframes: report.speakerTimeframes,
        });
      } catch (error) {
        if (error instanceof TransitionError && !isTerminal(error.from as BotStatus))
          return { status: error.from as BotStatus };
        throw error;
      }
    },

    /**
     * Keeps a screenshot the bot took. The bot (410 once ended) and the bucket (503 without one) are checked
     * before `read` takes in the upload.
     */
    async saveScreenshot(botId: string, read: () => Promise<ScreenshotInfo & { png: Buffer }>) {
      await liveBot(botId);
      if (!deps.screenshots)
        throw new UnavailableError('this fleet keeps no screenshots: it has no S3 bucket (S3_BUCKET_NAME)');
      const { png, ...info } = await read();
      return deps.screenshots.save(botId, png, info);
    },

    async reportEvent(botId: string, event: { type: string; at?: Date; data?: unknown }) {
      await liveBot(botId);
      await repo.appendEvent(botId, { type: `bot.${event.type}`, at: event.at ?? new Date(), data: event.data });
      return { ok: true };
    },
  };
}

export type BotsService = ReturnType<typeof createBotsService>;

/** JSON with sorted keys, so the same body always hashes the same. */
function stableJson(value: unknown): string {
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, inner]) => inner !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([key, inner]) => `${JSON.stringify(key)}:${stableJson(inner)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
