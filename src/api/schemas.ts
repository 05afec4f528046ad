import Joi from 'joi';
import {
  BOT_REPORTABLE_STATUSES,
  BOT_STATUSES,
  END_REASONS,
  MEETING_PLATFORMS,
  MeetingPlatform,
} from '../domain/bot.lifecycle';
import { checkMeetingUrl } from '../domain/meeting-url';
import { ValidationError } from '../errors';
import {
  SCREENSHOT_NAME,
  SCREENSHOT_STATE_MAX_CHARS,
  SCREENSHOT_TRIGGER_MAX_CHARS,
  SCREENSHOT_TYPES,
} from '../recordings/screenshots';
import { LOG_LEVELS } from '../store/bot-logs';

/** Joi schemas for every input of the API. `validate` turns the first failure into a 400 naming its path. */

const httpUrl = Joi.string()
  .uri({ scheme: ['http', 'https'] })
  .max(2048);
const timeoutMs = Joi.number()
  .integer()
  .min(0)
  .max(24 * 3600 * 1000);

/** Required when the meeting is on one of `platforms` and has no url (Zoom and Teams can join by id). */
const requiredWithoutUrlOn = (schema: Joi.StringSchema, platforms: string[]) =>
  schema.when('platform', {
    is: Joi.valid(...platforms).required(), // `is` matches an absent platform unless required
    then: Joi.when('url', { not: Joi.exist(), then: Joi.required() }),
  });

/** A link of one of the accepted forms (src/domain/meeting-url.ts), of the platform named beside it if any. */
const meetingUrl = Joi.string()
  .max(2048)
  .description(
    'An https:// meeting link without port or credentials (its query is kept): `https://meet.google.com/abc-defg-hij`; ' +
      '`https://teams.microsoft.com/l/meetup-join/…` or `https://teams.live.com/meet/<id>`; `https://zoom.us/j/<9-11 digits>` ' +
      'or `https://zoom.us/my/<name>` (also on `*.zoom.us`). It must be of `platform` when both are given.',
  )
  .custom((url: string, helpers) => {
    const named = (helpers.state.ancestors as Array<{ platform?: unknown }>)[0].platform;
    const check = checkMeetingUrl(
      url,
      MEETING_PLATFORMS.find((platform) => platform === named),
    );
    return 'problem' in check ? helpers.message({ custom: check.problem }) : url;
  });

const meeting = Joi.object({
  platform: Joi.string()
    .valid(...MEETING_PLATFORMS)
    .description('Required without `url`; inferred from `url` when left out'),
  // Google Meet joins by url only.
  url: meetingUrl.when('platform', { is: 'google-meet', then: Joi.required() }),
  meetingId: requiredWithoutUrlOn(Joi.string().max(256), ['zoom', 'microsoft-teams']),
  password: Joi.string().max(256),
  organizerId: requiredWithoutUrlOn(Joi.string().max(256), ['microsoft-teams']),
  tenantId: requiredWithoutUrlOn(Joi.string().max(256), ['microsoft-teams']),
})
  // The platform may be left out when the url tells it; joining by id alone needs it named. (Not a when() on
  // platform: url's own when() refers to platform, and Joi refuses the cycle.)
  .custom((value: { platform?: MeetingPlatform; url?: string }, helpers) => {
    if (value.platform) return value;
    if (!value.url) {
      return helpers.error('any.required', {}, helpers.state.localize!([...helpers.state.path!, 'platform']));
    }
    // the url passed its own check above, so it names a platform
    return { ...value, platform: (checkMeetingUrl(value.url) as { platform: MeetingPlatform }).platform };
  })
  // what the custom rule refuses, for the OpenAPI document (src/api/openapi/joi-json-schema.ts)
  .meta({ jsonSchema: { anyOf: [{ required: ['platform'] }, { required: ['url'] }] } })
  .required();

export const createBotSchema = Joi.object({
  meeting,
  displayName: Joi.string().trim().min(1).max(100).default('Meeboter'),
  imageUrl: httpUrl,
  joinAt: Joi.date().iso(),
  maxDurationMs: Joi.number()
    .integer()
    .min(1000)
    .max(24 * 3600 * 1000),
  recording: Joi.boolean().default(false),
  automaticLeave: Joi.object({
    waitingRoomTimeoutMs: timeoutMs,
    noOneJoinedTimeoutMs: timeoutMs,
    everyoneLeftTimeoutMs: timeoutMs,
    inactivityTimeoutMs: timeoutMs,
  }),
  callbackUrl: httpUrl,
  metadata: Joi.object().pattern(Joi.string().max(100), Joi.string().max(1000)).max(16).default({}),
});

/** A bot's id, as in its JSON. */
export const botIdSchema = Joi.string()
  .hex()
  .length(24)
  .description('A bot id: 24 hex digits')
  .example('6751c0a4e3b2f1a9c8d7e6f5');

/** What a URL may name a bot by (`/api/bots/:id`): its id or its number. */
export const botRefSchema = Joi.string()
  .pattern(/^([0-9a-fA-F]{24}|[1-9][0-9]{0,15})$/)
  .description("The bot's id (24 hex digits) or its number")
  .example('6751c0a4e3b2f1a9c8d7e6f5');

/** The levels a bot of the upstream protocol logs at, and may be asked to log at. */
export const logLevelSchema = Joi.string().valid(...LOG_LEVELS);

/** PATCH /api/bots/:id: what an owner may change on a bot. */
export const updateBotSchema = Joi.object({
  logLevel: logLevelSchema
    .allow(null)
    .required()
    .description('The level the bot is asked to log at (answered with its heartbeats); null: its own default'),
});

export const chatMessageSchema = Joi.object({
  message: Joi.string().min(1).max(4000).required().description('The text the bot posts in the meeting chat'),
});

export const listLogsSchema = Joi.object({
  level: logLevelSchema,
  limit: Joi.number().integer().min(1).max(1000).default(100),
  // a Redis stream id, each part short enough for Redis (64 bits)
  cursor: Joi.string()
    .pattern(/^\d{1,15}-\d{1,15}$/)
    .description('`nextCursor` of the page before'),
});

export const listBotsSchema = Joi.object({
  status: Joi.string().valid(...BOT_STATUSES),
  platform: Joi.string().max(64),
  limit: Joi.number().integer().min(1).max(100).default(20),
  cursor: botIdSchema.description('`nextCursor` of the page before'),
});

export const idempotencyKeySchema = Joi.string().min(1).max(255);

/** The text fields of a screenshot upload (multipart, beside the PNG in `file`). */
export const screenshotFieldsSchema = Joi.object({
  type: Joi.string()
    .valid(...SCREENSHOT_TYPES)
    .required(),
  state: Joi.string()
    .max(SCREENSHOT_STATE_MAX_CHARS)
    .required()
    .description("The bot's state when it took the shot, e.g. `IN_CALL`"),
  trigger: Joi.string()
    .max(SCREENSHOT_TRIGGER_MAX_CHARS)
    .description('What made the bot take it, e.g. an error message'),
});

export const listScreenshotsSchema = Joi.object({
  limit: Joi.number().integer().min(1).max(100).default(50),
  cursor: Joi.string().pattern(SCREENSHOT_NAME).description('`nextCursor` of the page before'),
});

export const statusReportSchema = Joi.object({
  status: Joi.string()
    .valid(...BOT_REPORTABLE_STATUSES)
    .required(),
  reason: Joi.string().valid(...END_REASONS),
  message: Joi.string().max(2000),
  recordingKey: Joi.string().max(1024),
});

export const botEventSchema = Joi.object({
  type: Joi.string()
    .pattern(/^[a-zA-Z0-9_.-]+$/)
    .max(64)
    .required(),
  at: Joi.date().iso(),
  data: Joi.any(),
});

/** PATCH /api/platforms/:name: at least one field; the limit no higher than the configured `ceiling`. */
export const platformControlSchema = (ceiling: number) =>
  Joi.object({
    limit: Joi.number()
      .integer()
      .min(1)
      .max(ceiling)
      .allow(null)
      .messages({ 'number.max': `must be at most the configured limit ({{#limit}}); raise it in the configuration` }),
    draining: Joi.boolean(),
  })
    .or('limit', 'draining')
    .required();

/**
 * A field's path as a client reads it: `meeting.url`, `data[0]`, and keys that are not plain names quoted,
 * `metadata["sim.durationMs"]` or `[""]` (an empty key), so that every path names exactly one field.
 */
export function fieldPath(path: ReadonlyArray<string | number>, where: string): string {
  if (path.length === 0) return where;
  return path
    .map((part, index) => {
      if (typeof part === 'number') return `[${part}]`;
      if (/^[A-Za-z_$][\w$]*$/.test(part)) return index === 0 ? part : `.${part}`;
      return `[${JSON.stringify(part)}]`;
    })
    .join('');
}

export function validate<T>(schema: Joi.Schema, input: unknown, where = 'body'): T {
  const result = schema.validate(input ?? {}, { abortEarly: false, convert: true, stripUnknown: false });
  if (result.error) {
    const details = result.error.details.map((detail) => ({
      path: fieldPath(detail.path, where),
      message: detail.message.replace(/^"[^"]*" /, ''),
    }));
    throw new ValidationError(
      `${where === 'body' ? '' : where + ': '}${details[0].path} ${details[0].message}`,
      details,
    );
  }
  return result.value as T;
}
