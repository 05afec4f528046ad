import type { Schema } from 'joi';
import * as answers from '../response-schemas';
import { SCREENSHOT_MAX_BYTES, SCREENSHOT_MAX_MB } from '../../recordings/screenshots';
import {
  botEventSchema,
  chatMessageSchema,
  createBotSchema,
  idempotencyKeySchema,
  listBotsSchema,
  listLogsSchema,
  listScreenshotsSchema,
  screenshotFieldsSchema,
  statusReportSchema,
  updateBotSchema,
} from '../schemas';

/**
 * What the route table (src/api/routes.ts) does not say about each route: its words, its query, headers and
 * body schemas (the ones its handler validates with), its answers and examples. Keyed like the route table
 * (`METHOD /path/:param`); the document builder refuses a route without an entry and an entry without a
 * route. Errors every route of a kind shares (401 for a guard, 400/413/415 for a body, 404 for an id) are
 * added by the builder; only a route's own errors are listed here.
 */
export type Tag = 'Bots' | 'Platforms' | 'Bot protocol' | 'Health';

export interface Answer {
  description: string;
  schema: Schema;
  example: unknown;
}

export interface ErrorExample {
  when: string;
  code: string;
  message: string;
  details?: unknown;
}

export interface OperationDoc {
  operationId: string;
  tag: Tag;
  summary: string;
  description?: string;
  query?: Schema;
  headers?: Array<{ name: string; schema: Schema; description: string }>;
  /**
   * `platform-control`: PATCH /api/platforms/:name, whose schema depends on the configured limits. For a
   * multipart body, the schema of its text fields (the document adds the PNG part, `file`).
   */
  body?: { schema: Schema | 'platform-control'; example: unknown };
  answers: Record<number, Answer>;
  /** This route's own error answers: status → when (with its own example where the shared one does not fit). */
  errors?: Record<number, string | ErrorExample>;
}

const at = '2026-12-01T10:00:00.000Z';
const botId = '6751c0a4e3b2f1a9c8d7e6f5';

/** A bot as a client sees it, in the call. */
export const EXAMPLE_BOT = {
  id: botId,
  number: 42,
  status: 'IN_CALL',
  meeting: { platform: 'google-meet', url: 'https://meet.google.com/abc-defg-hij' },
  displayName: 'Meeboter',
  imageUrl: null,
  joinAt: null,
  platform: 'local',
  platformIdentifier: '48213@worker-1',
  queuePosition: null,
  createdAt: at,
  deployedAt: '2026-12-01T10:00:02.000Z',
  endedAt: null,
  endReason: null,
  lastHeartbeatAt: '2026-12-01T10:05:30.000Z',
  metadata: { team: 'sales' },
  speakerTimeframes: null,
  logLevel: null,
  recordingUrl: null,
};

const SCREENSHOT_EXAMPLE = {
  key: `bots/${botId}/screenshots/1764583500000-3b241101-e2bb-4255-8caf-4136c566a962.png`,
  capturedAt: '2026-12-01T10:05:00.000Z',
  type: 'state_change',
  state: 'IN_CALL',
  trigger: 'admitted from the waiting room',
};

const bot = (description: string, example: unknown = EXAMPLE_BOT): Answer => ({
  description,
  schema: answers.botResponseSchema,
  example,
});

const platformStats = {
  name: 'local',
  enabled: true,
  limit: 5,
  active: 2,
  queued: 0,
  queueTimeoutMs: 30000,
  draining: false,
};

export const OPERATIONS: Record<string, OperationDoc> = {
  'POST /api/bots/:id/heartbeat': {
    operationId: 'heartbeat',
    tag: 'Bot protocol',
    summary: 'Report that the bot is alive',
    description:
      'Every `heartbeatIntervalMs` (from the config). A live bot silent for HEARTBEAT_TIMEOUT_MS ends FATAL `HEARTBEAT_TIMEOUT`.',
    answers: {
      200: {
        description: 'Whether a client asked the bot to leave',
        schema: answers.heartbeatResponseSchema,
        example: { shouldLeave: false, logLevel: null },
      },
    },
  },
  'POST /api/bots/:id/status': {
    operationId: 'reportStatus',
    tag: 'Bot protocol',
    summary: "Report the bot's new status",
    description:
      'Steps may be skipped forward; nothing moves backward. A retried report of the status the bot already has is answered 200.',
    body: { schema: statusReportSchema, example: { status: 'IN_CALL' } },
    answers: {
      200: {
        description: 'The status the bot now has',
        schema: answers.statusReportResponseSchema,
        example: { status: 'IN_CALL' },
      },
    },
    errors: { 409: 'A transition the lifecycle does not allow (`ILLEGAL_TRANSITION`)' },
  },
  'GET /api/bots/:id/config': {
    operationId: 'getBotConfig',
    tag: 'Bot protocol',
    summary: 'What the bot is to do',
    answers: {
      200: {
        description: "The bot's meeting (with its password), behaviour and heartbeat interval",
        schema: answers.botConfigResponseSchema,
        example: {
          id: botId,
          meeting: { platform: 'zoom', meetingId: '123456789', password: 'secret' },
          displayName: 'Meeboter',
          imageUrl: null,
          automaticLeave: { everyoneLeftTimeoutMs: 60000 },
          maxDurationMs: 3600000,
          recording: false,
          heartbeatIntervalMs: 30000,
          metadata: {},
        },
      },
    },
  },
  'POST /api/bots/:id/events': {
    operationId: 'reportEvent',
    tag: 'Bot protocol',
    summary: 'Report an event (participant joined, a log line, …)',
    description: "Kept among the bot's events as `bot.<type>`.",
    body: { schema: botEventSchema, example: { type: 'participant.joined', at, data: { name: 'Ada' } } },
    answers: { 201: { description: 'Recorded', schema: answers.reportedEventResponseSchema, example: { ok: true } } },
  },
  'POST /api/bots/:id/screenshots': {
    operationId: 'uploadScreenshot',
    tag: 'Bot protocol',
    summary: 'Upload a screenshot the bot took',
    description:
      `multipart/form-data as Meeboter's images send it: the PNG in \`file\` (at most ${SCREENSHOT_MAX_MB} MB), ` +
      "`type`, `state` and optionally `trigger`; each field once, no other. Kept in the fleet bucket under the bot's prefix; " +
      'its owner lists them at GET /api/bots/{id}/screenshots.',
    body: {
      schema: screenshotFieldsSchema,
      example: { type: 'state_change', state: 'IN_CALL', trigger: 'admitted from the waiting room' },
    },
    answers: { 201: { description: 'Kept', schema: answers.screenshotResponseSchema, example: SCREENSHOT_EXAMPLE } },
    errors: {
      400: {
        when: 'A field is missing, invalid, repeated or unknown, or `file` is not a PNG: `details` names it',
        code: 'VALIDATION_FAILED',
        message: 'file must be a PNG image (it does not start with the PNG signature)',
        details: [{ path: 'file', message: 'must be a PNG image (it does not start with the PNG signature)' }],
      },
      413: {
        when: `\`file\` is larger than ${SCREENSHOT_MAX_MB} MB`,
        code: 'PAYLOAD_TOO_LARGE',
        message: `file is larger than ${SCREENSHOT_MAX_MB} MB (${SCREENSHOT_MAX_BYTES} bytes)`,
        details: [{ path: 'file', message: `is larger than ${SCREENSHOT_MAX_MB} MB (${SCREENSHOT_MAX_BYTES} bytes)` }],
      },
      415: {
        when: 'The body is not multipart/form-data',
        code: 'UNSUPPORTED_MEDIA_TYPE',
        message: 'the request body must be multipart/form-data',
      },
      503: {
        when: 'This fleet keeps no screenshots (no S3_BUCKET_NAME), or S3 failed after retries; nothing was kept',
        code: 'UNAVAILABLE',
        message: 'this fleet keeps no screenshots: it has no S3 bucket (S3_BUCKET_NAME)',
      },
    },
  },
  'GET /healthz': {
    operationId: 'health',
    tag: 'Health',
    summary: 'Liveness: the process answers',
    answers: { 200: { description: 'Alive', schema: answers.healthResponseSchema, example: { ok: true } } },
  },
  'GET /readyz': {
    operationId: 'ready',
    tag: 'Health',
    summary: 'Readiness: Redis answers; whether MongoDB does and bot changes reach it',
    description:
      'Ready while Redis answers: Redis decides and places, and the bot changes wait there for MongoDB. MongoDB away is ' +
      '`degraded: true` with a 200, so that running bots keep reaching the API; the changes are written once it is back.',
    answers: {
      200: {
        description: 'Redis answers; `degraded` while MongoDB does not or the changes lag',
        schema: answers.readyResponseSchema,
        example: {
          ready: true,
          degraded: true,
          checks: {
            redis: 'ok',
            mongodb: 'unavailable: timeout',
            flusher: 'lagging: MongoServerSelectionError: connect ECONNREFUSED 127.0.0.1:27017',
          },
          unflushedChanges: 412,
        },
      },
      503: {
        description: 'Redis does not answer',
        schema: answers.readyResponseSchema,
        example: {
          ready: false,
          degraded: false,
          checks: {
            redis: 'unavailable: Connection is closed.',
            mongodb: 'ok',
            flusher: 'unknown: Redis does not answer',
          },
          unflushedChanges: null,
        },
      },
    },
  },
  'GET /api/platforms': {
    operationId: 'listPlatforms',
    tag: 'Platforms',
    summary: 'Each platform and the global queue',
    answers: {
      200: {
        description: 'Per platform in PLATFORM_PRIORITY order, and the global queue',
        schema: answers.platformsResponseSchema,
        example: { platforms: [platformStats], globalQueue: { length: 0, oldestQueuedAt: null } },
      },
    },
  },
  'PATCH /api/platforms/:name': {
    operationId: 'updatePlatform',
    tag: 'Platforms',
    summary: "Change a platform's limit or drain it, at run time",
    description:
      "Admin key. `limit` at most the platform's configured `<NAME>_BOT_LIMIT` (`null` restores it); `draining: true` stops new " +
      'placements on it. Every process obeys at its next dispatcher run; no bot is stopped.',
    body: { schema: 'platform-control', example: { draining: true } },
    answers: {
      200: {
        description: 'The platform as it now is',
        schema: answers.platformStatsResponseSchema,
        example: { ...platformStats, draining: true },
      },
    },
    errors: { 404: 'Not a platform of this fleet, or admin routes are off (no ADMIN_API_KEY)' },
  },
  'GET /api/bots/pool-stats': {
    operationId: 'poolStats',
    tag: 'Platforms',
    summary: 'Pool counts (the seed shape)',
    description:
      'With `coolify`: its slot records (`starting` and `byMeetingPlatform` added). Without: summed over all platforms ' +
      '(total = limits, busy = occupying bots, idle = free capacity).',
    answers: {
      200: {
        description: 'The counts',
        schema: answers.poolStatsResponseSchema,
        example: { total: 5, idle: 3, busy: 2, error: 0, queueLength: 0 },
      },
    },
  },
  'POST /api/bots': {
    operationId: 'createBot',
    tag: 'Bots',
    summary: 'Send a bot to a meeting',
    description:
      'A future `joinAt` makes the bot SCHEDULED; otherwise it is QUEUED and placed on the first platform in PLATFORM_PRIORITY ' +
      'with room. Google Meet needs `url`; Zoom `url` or `meetingId`; Teams `url` or `meetingId` + `organizerId` + `tenantId`.',
    headers: [
      {
        name: 'Idempotency-Key',
        schema: idempotencyKeySchema,
        description:
          'The same key and body within 24 h answer the same bot (200) and never make a second; another body is a 409',
      },
    ],
    body: {
      schema: createBotSchema,
      example: {
        meeting: { url: 'https://meet.google.com/abc-defg-hij' },
        displayName: 'Notes',
        metadata: { team: 'sales' },
      },
    },
    answers: {
      201: bot('Created', {
        ...EXAMPLE_BOT,
        status: 'QUEUED',
        platform: null,
        platformIdentifier: null,
        queuePosition: 1,
        deployedAt: null,
        lastHeartbeatAt: null,
      }),
      200: bot('The bot an earlier request with this Idempotency-Key made'),
    },
    errors: {
      409: {
        when: 'The Idempotency-Key was used with another body',
        code: 'IDEMPOTENCY_KEY_REUSED',
        message: 'this Idempotency-Key was used with a different request body',
      },
      503: 'The placement queue is unreachable; nothing was created (`UNAVAILABLE`)',
    },
  },
  'GET /api/bots': {
    operationId: 'listBots',
    tag: 'Bots',
    summary: "The caller's bots, newest first",
    query: listBotsSchema,
    answers: {
      200: {
        description: 'One page',
        schema: answers.botListResponseSchema,
        example: { data: [EXAMPLE_BOT], nextCursor: null },
      },
    },
  },
  'GET /api/bots/:id': {
    operationId: 'getBot',
    tag: 'Bots',
    summary: 'One bot',
    answers: { 200: bot('The bot') },
  },
  'DELETE /api/bots/:id': {
    operationId: 'cancelBot',
    tag: 'Bots',
    summary: 'End the bot now',
    description:
      'ENDED `CANCELLED`: out of every queue, its container stopped, its capacity freed. Idempotent: an ended bot is answered as it is.',
    answers: {
      200: bot('The bot, ended', {
        ...EXAMPLE_BOT,
        status: 'ENDED',
        endReason: 'CANCELLED',
        endedAt: '2026-12-01T10:06:00.000Z',
      }),
    },
  },
  'POST /api/bots/:id/leave': {
    operationId: 'leaveBot',
    tag: 'Bots',
    summary: 'Ask the bot to leave its meeting',
    description:
      'A live bot goes LEAVING and learns it on its next heartbeat; if it has not ended after LEAVE_GRACE_MS its container is ' +
      'stopped (ENDED `LEFT`). A bot not deployed yet is cancelled.',
    answers: { 200: bot('The bot', { ...EXAMPLE_BOT, status: 'LEAVING' }) },
    errors: { 409: 'The bot has ended already (`ILLEGAL_TRANSITION`)' },
  },
  'GET /api/bots/:id/events': {
    operationId: 'listBotEvents',
    tag: 'Bots',
    summary: "The bot's status changes, placement attempts and reported events, oldest first",
    answers: {
      200: {
        description: 'Up to 1000 events',
        schema: answers.botEventListResponseSchema,
        example: {
          data: [
            {
              id: '6751c0a4e3b2f1a9c8d7e6f6',
              type: 'status',
              status: 'QUEUED',
              reason: null,
              message: null,
              data: { source: 'client' },
              at,
            },
            {
              id: '6751c0a4e3b2f1a9c8d7e6f7',
              type: 'attempt.assigned',
              status: null,
              reason: null,
              message: null,
              data: { platform: 'local' },
              at,
            },
          ],
        },
      },
    },
  },
  'PATCH /api/bots/:id': {
    operationId: 'updateBot',
    tag: 'Bots',
    summary: 'Change the level the bot is asked to log at',
    description:
      'Bots of the upstream protocol read it from each heartbeat answer (`logLevel`) and log at it from then on.',
    body: { schema: updateBotSchema, example: { logLevel: 'DEBUG' } },
    answers: { 200: bot('The bot', { ...EXAMPLE_BOT, logLevel: 'DEBUG' }) },
    errors: { 410: 'The bot has ended' },
  },
  'POST /api/bots/:id/chat': {
    operationId: 'sendChatMessage',
    tag: 'Bots',
    summary: 'Queue a message for the bot to post in the meeting chat',
    description:
      'The bot takes queued messages one at a time, in the order sent, each once (`bots.chat.dequeueMessage`). At most 100 wait at once; a queue is forgotten 24 h after its last message.',
    body: { schema: chatMessageSchema, example: { message: 'Recording starts now' } },
    answers: {
      202: { description: 'Queued', schema: answers.chatQueuedResponseSchema, example: { queued: true, sentAt: at } },
    },
    errors: {
      409: {
        when: 'The bot already has 100 messages waiting',
        code: 'CONFLICT',
        message:
          'bot 6751c0a4e3b2f1a9c8d7e6f5 already has the most chat messages that may wait; retry once it took some',
      },
      410: 'The bot has ended',
    },
  },
  'GET /api/bots/:id/logs': {
    operationId: 'listBotLogs',
    tag: 'Bots',
    summary: 'What the bot logged (upstream protocol `bots.logs.stream`), oldest first',
    description:
      'Kept per bot up to 5,000 entries and 2 MB of entry JSON; past either the oldest give way to the newest and `dropped` counts them. ' +
      'Kept 24 h after the last entry.',
    query: listLogsSchema,
    answers: {
      200: {
        description: 'One page',
        schema: answers.logPageResponseSchema,
        example: {
          data: [
            {
              seq: '1764583200000-0',
              id: '0b8f3c5e-6a1d-4b7e-9c2f-1d3e5f7a9b0c',
              botId: 42,
              timestamp: at,
              level: 'INFO',
              message: 'joined the call',
              state: 'IN_CALL',
            },
          ],
          nextCursor: null,
          dropped: 0,
        },
      },
    },
  },
  'GET /api/bots/:id/recording': {
    operationId: 'getRecording',
    tag: 'Bots',
    summary: "A short-lived link to the bot's recording",
    answers: {
      200: {
        description: 'A presigned S3 link, valid 15 minutes',
        schema: answers.recordingResponseSchema,
        example: {
          url: 'https://s3.example.com/recordings/6751c0a4e3b2f1a9c8d7e6f5.mp4?X-Amz-Signature=…',
          expiresAt: '2026-12-01T10:15:00.000Z',
        },
      },
    },
    errors: { 404: 'No such bot, no recording yet, or recordings are off (no S3_BUCKET_NAME)' },
  },
  'GET /api/bots/:id/screenshots': {
    operationId: 'listScreenshots',
    tag: 'Bots',
    summary: "The bot's screenshots, oldest first, with short-lived links",
    query: listScreenshotsSchema,
    answers: {
      200: {
        description: 'One page; each link a presigned S3 GET, valid 15 minutes',
        schema: answers.screenshotListResponseSchema,
        example: {
          data: [
            {
              ...SCREENSHOT_EXAMPLE,
              url: `https://s3.example.com/recordings/${SCREENSHOT_EXAMPLE.key}?X-Amz-Signature=…`,
              expiresAt: '2026-12-01T10:20:00.000Z',
            },
          ],
          nextCursor: null,
        },
      },
    },
    errors: {
      404: 'No such bot (or one of another owner), or screenshots are off (no S3_BUCKET_NAME)',
      503: {
        when: 'S3 failed after retries',
        code: 'UNAVAILABLE',
        message: "could not list the bot's screenshots (S3 did not answer as expected); retry later",
      },
    },
  },
};
