import Joi from 'joi';
import { BOT_REPORTABLE_STATUSES, BOT_STATUSES, END_REASONS, MEETING_PLATFORMS } from '../domain/bot.lifecycle';
import { SCREENSHOT_NAME, SCREENSHOT_TYPES } from '../recordings/screenshots';
import { LOG_LEVELS } from '../store/bot-logs';
import { botIdSchema } from './schemas';

/**
 * Joi schemas of what the API answers, beside the input schemas in schemas.ts: the OpenAPI document is made
 * from both (src/api/openapi/), the fuzz test holds every answer to them, and test/openapi.test.ts checks the
 * document's examples with them. The API does not validate its answers at run time. Every key is present in
 * every answer (null when there is nothing), so objects default to required keys; the named ones (`id()`)
 * become components of the document.
 */
const answer = <T extends Joi.ObjectSchema>(schema: T) => schema.prefs({ presence: 'required' });

const isoTime = Joi.string().isoDate();
const count = Joi.number().integer().min(0);
const text = Joi.string();

const meetingFields = {
  platform: Joi.string().valid(...MEETING_PLATFORMS),
  url: text.optional(),
  meetingId: text.optional(),
  organizerId: text.optional(),
  tenantId: text.optional(),
};

const metadata = Joi.object().pattern(Joi.string(), Joi.string()).description('Up to 16 string values, as given');

export const botResponseSchema = answer(
  Joi.object({
    id: botIdSchema,
    number: Joi.number()
      .integer()
      .min(1)
      .allow(null)
      .description(
        "The bot's number, unique in the fleet: its `BOT_ID`, and another name of it in URLs (null for bots made before numbers)",
      ),
    status: Joi.string().valid(...BOT_STATUSES),
    meeting: Joi.object(meetingFields).description('As given at creation, without the password'),
    displayName: text,
    imageUrl: text.allow(null),
    joinAt: isoTime.allow(null),
    platform: text.allow(null).description('The deployment platform of the current or last attempt'),
    platformIdentifier: text.allow(null).description("The container's name or id on that platform"),
    queuePosition: Joi.number()
      .integer()
      .min(1)
      .allow(null)
      .description('Place in the global queue (1 = next) while QUEUED'),
    createdAt: isoTime,
    deployedAt: isoTime.allow(null),
    endedAt: isoTime.allow(null),
    endReason: Joi.string()
      .valid(...END_REASONS)
      .allow(null),
    lastHeartbeatAt: isoTime.allow(null),
    metadata,
    speakerTimeframes: Joi.array()
      .items(
        answer(
          Joi.object({
            speakerName: text,
            start: Joi.alternatives(Joi.number(), text),
            end: Joi.alternatives(Joi.number(), text),
          }),
        ),
      )
      .allow(null)
      .description('Who spoke when, as the bot reported it with its end'),
    logLevel: Joi.string()
      .valid(...LOG_LEVELS)
      .allow(null)
      .description('The level the bot is asked to log at; null: its own default'),
    recordingUrl: text.allow(null).description('A short-lived link to the recording, once the bot reported one'),
  }),
).id('Bot');

export const botListResponseSchema = answer(
  Joi.object({
    data: Joi.array().items(botResponseSchema),
    nextCursor: botIdSchema.allow(null).description('Pass as `cursor` for the next page; null on the last'),
  }),
);

export const botEventResponseSchema = answer(
  Joi.object({
    id: botIdSchema.description('The event id'),
    type: text.description('`status`, `attempt.<what>`, `container.<what>`, `webhook.<what>` or `bot.<reported type>`'),
    status: Joi.string()
      .valid(...BOT_STATUSES)
      .allow(null),
    reason: text.allow(null),
    message: text.allow(null),
    data: Joi.any(),
    at: isoTime,
  }),
).id('BotEvent');

export const botEventListResponseSchema = answer(Joi.object({ data: Joi.array().items(botEventResponseSchema) }));

export const recordingResponseSchema = answer(
  Joi.object({ url: text.description('A presigned S3 GET link'), expiresAt: isoTime }),
);

const screenshotFields = {
  key: text.description('The object in the fleet bucket: `bots/<bot id>/screenshots/<capture time in ms>-<uuid>.png`'),
  capturedAt: isoTime.description('When the fleet received it'),
  type: Joi.string().valid(...SCREENSHOT_TYPES),
  state: text.allow(''),
  trigger: text.allow('').optional().description('Present only when the bot gave one'),
};

/** Upstream Meeboter's answer to an upload (its images read nothing of it but the status). */
export const screenshotResponseSchema = answer(Joi.object(screenshotFields));

export const screenshotListResponseSchema = answer(
  Joi.object({
    data: Joi.array().items(
      Joi.object({
        ...screenshotFields,
        url: text.description('A presigned S3 GET link, valid 15 minutes'),
        expiresAt: isoTime,
      }),
    ),
    nextCursor: Joi.string()
      .pattern(SCREENSHOT_NAME)
      .allow(null)
      .description('Pass as `cursor` for the next page; null on the last'),
  }),
);

export const platformStatsResponseSchema = answer(
  Joi.object({
    name: text,
    enabled: Joi.boolean(),
    limit: count.description('The limit in force (the configured one unless lowered at run time)'),
    active: count.description('Bots occupying the platform'),
    queued: count.description('Bots assigned to it and waiting for their deploy to start'),
    queueTimeoutMs: count,
    draining: Joi.boolean(),
  }),
).id('PlatformStats');

export const platformsResponseSchema = answer(
  Joi.object({
    platforms: Joi.array().items(platformStatsResponseSchema),
    globalQueue: Joi.object({ length: count, oldestQueuedAt: isoTime.allow(null) }),
  }),
);

const poolCounts = { total: count, idle: count, starting: count, busy: count, error: count };

export const poolStatsResponseSchema = answer(
  Joi.object({
    total: count,
    idle: count,
    busy: count,
    error: count,
    queueLength: count.description('Bots in the global queue'),
    starting: count.optional().description('With coolify: slots starting'),
    byMeetingPlatform: Joi.object()
      .pattern(Joi.string(), answer(Joi.object(poolCounts)))
      .optional()
      .description('With coolify: the counts per meeting platform'),
  }),
);

export const botConfigResponseSchema = answer(
  Joi.object({
    id: botIdSchema,
    meeting: Joi.object({ ...meetingFields, password: text.optional() }).description(
      'With the password: only the bot itself reads this',
    ),
    displayName: text,
    imageUrl: text.allow(null),
    automaticLeave: Joi.object({
      waitingRoomTimeoutMs: count.optional(),
      noOneJoinedTimeoutMs: count.optional(),
      everyoneLeftTimeoutMs: count.optional(),
      inactivityTimeoutMs: count.optional(),
    }),
    maxDurationMs: count.allow(null),
    recording: Joi.boolean(),
    heartbeatIntervalMs: count,
    metadata,
  }),
);

export const heartbeatResponseSchema = answer(
  Joi.object({
    shouldLeave: Joi.boolean().description('True once a client asked the bot to leave'),
    logLevel: Joi.string()
      .valid(...LOG_LEVELS)
      .allow(null)
      .description("The level the bot's owner asks it to log at; null: its own default"),
  }),
);

export const chatQueuedResponseSchema = answer(Joi.object({ queued: Joi.boolean().valid(true), sentAt: isoTime }));

export const logPageResponseSchema = answer(
  Joi.object({
    data: Joi.array().items(
      Joi.object({
        seq: text.description("The entry's place in the bot's log"),
        level: Joi.string().valid(...LOG_LEVELS),
      })
        .unknown()
        .prefs({ presence: 'required' })
        .description('An entry as the bot sent it (`message`, `timestamp`, `state`, `context`...), with its place'),
    ),
    nextCursor: text.allow(null).description('Pass as `cursor` for the next page; null on the last'),
    dropped: count.description('Older entries dropped so far to keep the log within its bound'),
  }),
);

export const statusReportResponseSchema = answer(
  Joi.object({
    status: Joi.string()
      .valid(...BOT_REPORTABLE_STATUSES)
      .description('The status the bot now has'),
  }),
);

export const reportedEventResponseSchema = answer(Joi.object({ ok: Joi.boolean().valid(true) }));

export const healthResponseSchema = answer(Joi.object({ ok: Joi.boolean().valid(true) }));

export const readyResponseSchema = answer(
  Joi.object({
    ready: Joi.boolean().description('Redis answers: the process serves (bots, heartbeats, reports, placement)'),
    degraded: Joi.boolean().description(
      'Ready, but MongoDB does not answer or the bot changes do not reach it: they wait in Redis',
    ),
    checks: Joi.object({
      redis: text.description('`ok`, or `unavailable: <why>`'),
      mongodb: text.description('`ok`, or `unavailable: <why>`'),
      flusher: text.description(
        '`ok`, `lagging: <why>` while MongoDB refuses the bot changes this process writes, or `unknown: ...` without Redis',
      ),
    }),
    unflushedChanges: Joi.number()
      .integer()
      .min(0)
      .allow(null)
      .description('Bot changes not in MongoDB yet (null: Redis does not answer)'),
  }),
);

export const errorResponseSchema = answer(
  Joi.object({
    error: Joi.object({
      code: text.description(
        'VALIDATION_FAILED, UNAUTHORIZED, NOT_FOUND, IDEMPOTENCY_KEY_REUSED, ILLEGAL_TRANSITION, GONE, PAYLOAD_TOO_LARGE, ' +
          'UNSUPPORTED_MEDIA_TYPE, RATE_LIMITED, UNAVAILABLE',
      ),
      message: text,
      details: Joi.alternatives()
        .try(
          Joi.array()
            .items(answer(Joi.object({ path: text, message: text })))
            .description('VALIDATION_FAILED: each failing field'),
          Joi.object().unknown(),
        )
        .allow(null),
      requestId: text.allow(null).description('Also the X-Request-Id header of the answer; find it in the logs'),
    }),
  }),
).id('Error');
