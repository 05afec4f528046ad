/**
 * Terminology
 * - bot: one request to send a bot into one meeting; it lives from creation until ENDED or FATAL.
 * - platform: where a bot's container runs (k8s, aws, coolify, local, sim); tried in PLATFORM_PRIORITY order.
 * - attempt: one try to run a bot on one platform. A bot is offered to each platform at most once.
 * - occupying: a bot holds one unit of a platform's limit from the deploy call until the platform confirms
 *   its container is gone.
 * - global queue: the FIFO line of bots waiting for any platform to free capacity.
 *
 * This module is pure: no database, queue or HTTP import may appear here.
 */
/** Forward order of the lifecycle; FATAL is reachable from any non-terminal status. */
export const BOT_STATUSES = [
  'SCHEDULED',
  'QUEUED',
  'DEPLOYING',
  'JOINING_CALL',
  'IN_WAITING_ROOM',
  'IN_CALL',
  'LEAVING',
  'ENDED',
  'FATAL',
] as const;
export type BotStatus = (typeof BOT_STATUSES)[number];

export const TERMINAL_STATUSES: readonly BotStatus[] = ['ENDED', 'FATAL'];

/** Statuses in which a container may exist and the bot is expected to heartbeat. */
export const LIVE_STATUSES: readonly BotStatus[] = [
  'DEPLOYING',
  'JOINING_CALL',
  'IN_WAITING_ROOM',
  'IN_CALL',
  'LEAVING',
];

/** Statuses a bot itself may report through POST /status. The fleet owns SCHEDULED, QUEUED and DEPLOYING. */
export const BOT_REPORTABLE_STATUSES: readonly BotStatus[] = [
  'JOINING_CALL',
  'IN_WAITING_ROOM',
  'IN_CALL',
  'LEAVING',
  'ENDED',
  'FATAL',
];

export const END_REASONS = [
  'COMPLETED',
  'CANCELLED',
  'LEFT',
  'QUEUE_TIMEOUT',
  'DEPLOY_FAILED',
  'DEPLOY_TIMEOUT',
  'HEARTBEAT_TIMEOUT',
  'CONTAINER_LOST',
  'BOT_ERROR',
] as const;
export type EndReason = (typeof END_REASONS)[number];

export const MEETING_PLATFORMS = ['google-meet', 'microsoft-teams', 'zoom'] as const;
export type MeetingPlatform = (typeof MEETING_PLATFORMS)[number];

export function isTerminal(status: BotStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** Whether a bot may move from `from` to `to`: forward only, FATAL from anywhere live, terminal is final. */
export function canTransition(from: BotStatus, to: BotStatus): boolean {
  if (isTerminal(from)) return false;
  if (to === 'FATAL') return true;
  return BOT_STATUSES.indexOf(to) > BOT_STATUSES.indexOf(from);
}

/**
 * The end reason a terminal status reported by a bot carries when it gives none: ENDED after a client asked
 * the bot to leave is LEFT, otherwise COMPLETED; FATAL reported by a bot is BOT_ERROR.
 */
export function defaultEndReason(status: BotStatus, leaveRequested: boolean): EndReason | undefined {
  if (status === 'ENDED') return leaveRequested ? 'LEFT' : 'COMPLETED';
  if (status === 'FATAL') return 'BOT_ERROR';
  return undefined;
}
