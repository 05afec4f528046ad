import { BotDoc, BotEventDoc, MetadataEntry } from './models';

export function metadataToRecord(entries: MetadataEntry[] | undefined): Record<string, string> {
  return Object.fromEntries((entries ?? []).map(({ key, value }) => [key, value]));
}

export function metadataFromRecord(record: Record<string, string> | undefined): MetadataEntry[] {
  return Object.entries(record ?? {}).map(([key, value]) => ({ key, value }));
}

/**
 * The one mapper from bot documents to what leaves the process. Client JSON never carries the meeting
 * password; only the bot's own config does.
 */
export interface BotJson {
  id: string;
  number: number | null;
  status: string;
  meeting: Omit<BotDoc['meeting'], 'password'>;
  displayName: string;
  imageUrl: string | null;
  joinAt: string | null;
  platform: string | null;
  platformIdentifier: string | null;
  queuePosition: number | null;
  createdAt: string;
  deployedAt: string | null;
  endedAt: string | null;
  endReason: string | null;
  lastHeartbeatAt: string | null;
  metadata: Record<string, string>;
  speakerTimeframes: BotDoc['speakerTimeframes'] | null;
  logLevel: string | null;
  /** A short-lived link to the recording, filled in by the bots service where recordings are configured. */
  recordingUrl: string | null;
}

const iso = (date?: Date | null) => (date ? new Date(date).toISOString() : null);

export function toBotJson(bot: BotDoc, queuePosition: number | null = null): BotJson {
  const meeting = { ...bot.meeting };
  delete meeting.password;
  return {
    id: String(bot._id),
    number: bot.number ?? null,
    status: bot.status,
    meeting,
    displayName: bot.displayName,
    imageUrl: bot.imageUrl ?? null,
    joinAt: iso(bot.joinAt),
    platform: bot.platform ?? null,
    platformIdentifier: bot.platformIdentifier ?? null,
    queuePosition: bot.status === 'QUEUED' ? queuePosition : null,
    createdAt: iso(bot.createdAt)!,
    deployedAt: iso(bot.deployedAt),
    endedAt: iso(bot.endedAt),
    endReason: bot.endReason ?? null,
    lastHeartbeatAt: iso(bot.lastHeartbeatAt),
    metadata: metadataToRecord(bot.metadata),
    speakerTimeframes: bot.speakerTimeframes ?? null,
    logLevel: bot.logLevel ?? null,
    recordingUrl: null,
  };
}

/** What a bot container reads from GET /api/bots/:id/config (docs/bot-protocol.md). */
export function toBotConfig(bot: BotDoc, heartbeatIntervalMs: number) {
  return {
    id: String(bot._id),
    meeting: bot.meeting,
    displayName: bot.displayName,
    imageUrl: bot.imageUrl ?? null,
    automaticLeave: bot.automaticLeave ?? {},
    maxDurationMs: bot.maxDurationMs ?? null,
    recording: bot.recording,
    heartbeatIntervalMs,
    metadata: metadataToRecord(bot.metadata),
  };
}

export function toEventJson(event: BotEventDoc) {
  return {
    id: String(event._id),
    type: event.type,
    status: event.status ?? null,
    reason: event.reason ?? null,
    message: event.message ?? null,
    data: typeof event.data === 'string' ? (JSON.parse(event.data) as unknown) : (event.data ?? null),
    at: iso(event.at),
  };
}

/** Upstream's defaults for the automatic-leave timeouts a bot was created without (ms). */
const IMAGE_AUTOMATIC_LEAVE = {
  waitingRoomTimeout: 600_000,
  noOneJoinedTimeout: 60_000,
  everyoneLeftTimeout: 60_000,
  inactivityTimeout: 300_000,
};
/**
 * A bot image ends itself (FATAL, "Maximum duration exceeded") an hour after the config's `startTime`, its
 * only use of it. So `startTime` is set to when that hour must start for the image to stop at the bot's
 * `maxDurationMs` (an hour without one), counted from its deploy: the time it waited in queues does not count.
 */
const IMAGE_RUN_LIMIT_MS = 3600_000;

/** The config in the shape the upstream bot images read (`bots.getConfig`): numeric id, dates as Dates. */
export function toImageConfig(bot: BotDoc) {
  const ranFrom = new Date(bot.deployedAt ?? bot.joinAt ?? bot.createdAt).getTime();
  const endTime = new Date(ranFrom + (bot.maxDurationMs ?? IMAGE_RUN_LIMIT_MS));
  const startTime = new Date(endTime.getTime() - IMAGE_RUN_LIMIT_MS);
  const leave = bot.automaticLeave ?? {};
  const defined = <T extends object>(value: T) =>
    Object.fromEntries(Object.entries(value).filter(([, inner]) => inner !== undefined)) as Partial<T>;
  return {
    id: bot.number ?? 0,
    userId: bot.ownerId,
    meeting: defined({
      platform: bot.meeting.platform,
      meetingUrl: bot.meeting.url,
      meetingId: bot.meeting.meetingId,
      meetingPassword: bot.meeting.password,
      organizerId: bot.meeting.organizerId,
      tenantId: bot.meeting.tenantId,
    }),
    startTime,
    endTime,
    displayName: bot.displayName,
    ...(bot.imageUrl ? { imageUrl: bot.imageUrl } : {}),
    recordingEnabled: bot.recording,
    automaticLeave: {
      waitingRoomTimeout: leave.waitingRoomTimeoutMs ?? IMAGE_AUTOMATIC_LEAVE.waitingRoomTimeout,
      noOneJoinedTimeout: leave.noOneJoinedTimeoutMs ?? IMAGE_AUTOMATIC_LEAVE.noOneJoinedTimeout,
      everyoneLeftTimeout: leave.everyoneLeftTimeoutMs ?? IMAGE_AUTOMATIC_LEAVE.everyoneLeftTimeout,
      inactivityTimeout: leave.inactivityTimeoutMs ?? IMAGE_AUTOMATIC_LEAVE.inactivityTimeout,
    },
    ...(bot.callbackUrl ? { callbackUrl: bot.callbackUrl } : {}),
  };
}
