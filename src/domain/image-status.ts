import { BotStatus } from './bot.lifecycle';

/**
 * The statuses the upstream bot images report (`bots.updateStatus`) and what each asks of our lifecycle.
 * Pure: the caller applies the answer through the one transition rule (transition.ts).
 */
export const IMAGE_STATUSES = [
  'DEPLOYING',
  'JOINING_CALL',
  'IN_WAITING_ROOM',
  'IN_CALL',
  'LEAVING',
  'CALL_ENDED',
  'DONE',
  'FATAL',
] as const;
export type ImageStatus = (typeof IMAGE_STATUSES)[number];

/** The event codes the images report (`bots.events.report`): their statuses and what happens in a meeting. */
export const IMAGE_EVENT_CODES = [
  ...IMAGE_STATUSES,
  'PARTICIPANT_JOIN',
  'PARTICIPANT_LEAVE',
  'LOG',
  'USER_REMOVED_FROM_CALL',
  'USER_CANCELLED_DEPLOYMENT',
  'SIGN_IN_REQUIRED',
  'CAPTCHA_DETECTED',
  'MEETING_NOT_FOUND',
  'MEETING_ENDED',
  'PERMISSION_DENIED',
  'JOIN_BLOCKED',
  'RESTARTING',
] as const;

/**
 * Our status for an image's report, or null when the report changes nothing: DEPLOYING is the fleet's own
 * status, and while the bot is LEAVING only its end (DONE, FATAL) counts. DONE is the end of a bot's work
 * (ENDED, with the reason the lifecycle gives a bot's own end); CALL_ENDED means the meeting ended under the
 * bot, which now leaves.
 */
export function fromImageStatus(
  reported: ImageStatus,
  current: BotStatus,
): { status: BotStatus; message?: string } | null {
  if (current === 'LEAVING' && reported !== 'DONE' && reported !== 'FATAL') return null;
  switch (reported) {
    case 'DEPLOYING':
      return null;
    case 'CALL_ENDED':
      return { status: 'LEAVING', message: 'the call ended' };
    case 'DONE':
      return { status: 'ENDED' };
    default:
      return { status: reported };
  }
}
