/**
 * The lifecycle's one decision: given a bot as it is and what someone asks of it, the change to make or the
 * refusal. Pure (no clock, database or queue): the caller supplies the time and applies the change
 * atomically, so every writer of a bot status, whoever it is, follows the same rules.
 */
import { TransitionError } from '../errors';
import { BotStatus, canTransition, defaultEndReason, EndReason, isTerminal } from './bot.lifecycle';

/** The fields of a bot the decision reads; a stored bot document has them all. */
export interface BotState {
  status: BotStatus;
  platform: string | null;
  statusVersion: number;
  statusChangedAt?: Date;
  leaveRequestedAt?: Date;
}

export interface Attempt {
  platform: string;
  outcome: 'failed' | 'timed-out' | 'full';
  reason?: string;
  at: Date;
}

export type TransitionRequest =
  /** A move to `to`; fields in `set` are written with it (identifiers, timestamps). */
  | {
      kind: 'move';
      to: BotStatus;
      source: 'bot' | 'client' | 'fleet';
      /** The end reason of a terminal move; a bot's own report without one gets the lifecycle's default. */
      reason?: EndReason;
      message?: string;
      data?: Record<string, unknown>;
      set?: Record<string, unknown>;
      /** Refuses the move unless the bot is in this status now (the fleet's QUEUED → DEPLOYING claim). */
      onlyFrom?: BotStatus;
    }
  /**
   * The fleet's one backward move: a bot whose attempt on `platform` failed, timed out or found it full
   * before any container ran goes back to QUEUED; a failed or timed-out platform is excluded for it.
   */
  | { kind: 'requeue'; platform: string; attempt: Attempt };

export interface StatusChange {
  /** Fields to set, the status and the times included. */
  set: Record<string, unknown> & { status: BotStatus; statusChangedAt: Date; statusVersion: number };
  /** An attempt to append to the bot's list. */
  attempt?: Attempt;
  /** A platform to add to the bot's exclusions. */
  exclude?: string;
  /** The status event that records the change. */
  event: { status: BotStatus; reason?: string; message?: string; data: Record<string, unknown> };
}

/**
 * Decides `request` against `current` at `nowMs`. Status times per bot strictly increase (a change at the
 * same millisecond as the previous one is stamped a millisecond later), so the event list orders changes as
 * they happened even when they come from several processes.
 */
export function decideTransition(
  current: BotState,
  request: TransitionRequest,
  nowMs: number,
): StatusChange | TransitionError {
  const at = new Date(Math.max(nowMs, (current.statusChangedAt?.getTime() ?? 0) + 1));
  const statusVersion = current.statusVersion + 1;
  if (request.kind === 'requeue') {
    const { platform, attempt } = request;
    const onThatPlatform = current.platform === platform || current.platform === null;
    if (!onThatPlatform || (current.status !== 'QUEUED' && current.status !== 'DEPLOYING')) {
      return new TransitionError(current.status, 'QUEUED');
    }
    return {
      set: { status: 'QUEUED', platform: null, platformIdentifier: null, statusChangedAt: at, statusVersion },
      attempt,
      exclude: attempt.outcome === 'full' ? undefined : platform,
      event: { status: 'QUEUED', reason: attempt.reason, data: { source: 'fleet', version: statusVersion } },
    };
  }
  const { to } = request;
  const expected = request.onlyFrom === undefined || request.onlyFrom === current.status;
  if (!expected || !canTransition(current.status, to)) return new TransitionError(current.status, to);
  const set: StatusChange['set'] = { ...request.set, status: to, statusChangedAt: at, statusVersion };
  if (isTerminal(to)) {
    set.endedAt = at;
    const endReason =
      request.reason ??
      (request.source === 'bot' ? defaultEndReason(to, Boolean(current.leaveRequestedAt)) : undefined);
    if (endReason) set.endReason = endReason;
  }
  return {
    set,
    event: {
      status: to,
      reason: (set.endReason as EndReason | undefined) ?? request.reason,
      message: request.message,
      data: { source: request.source, ...request.data, version: statusVersion },
    },
  };
}
