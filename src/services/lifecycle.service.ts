import { BotStatus, EndReason, isTerminal } from '../domain/bot.lifecycle';
import { NotFoundError, TransitionError } from '../errors';
import { logger } from '../logger';
import { metrics, secondsSince } from '../metrics';
import { BotRepository } from '../store/bot.repository';
import { AttemptDoc, BotDoc } from '../store/models';

/**
 * Every status change of every bot goes through here, whoever asks (the bot, a client, a worker, a sweep):
 * one guarded update decides and records the event in the same locked step, the Redis due-sets follow, and a
 * terminal status triggers the release (queue withdrawal and the end signal that makes the holder stop the
 * container).
 */
export interface LifecycleEffects {
  /** Removes a bot from every queue it may wait in. */
  withdraw(botId: string): Promise<void>;
  /** Tells the process holding the bot's platform capacity to stop its container. */
  publishEnded(botId: string): Promise<void>;
  /** Keeps the sweeps' due-sets in step (and forgets the bot once terminal). */
  statusChanged(botId: string, status: BotStatus, bySelf: boolean): Promise<void>;
  lastHeartbeat(botId: string): Promise<Date | null>;
  /** Announces a status change to the bot's callbackUrl, if it has one. */
  notify(bot: BotDoc): Promise<void>;
}

export interface TransitionRequest {
  /** The end reason of a terminal move; a function decides it from the bot as it is just before the move. */
  reason?: EndReason | ((current: BotDoc) => EndReason | undefined);
  message?: string;
  set?: Partial<BotDoc>;
  source: 'bot' | 'client' | 'fleet';
  data?: unknown;
}

export interface Lifecycle {
  /** Applies a transition or throws TransitionError (409) / NotFoundError (404). */
  transition(botId: string, to: BotStatus, request: TransitionRequest): Promise<BotDoc>;
  /** Same, but returns null where `transition` would throw. */
  tryTransition(botId: string, to: BotStatus, request: TransitionRequest): Promise<BotDoc | null>;
  /**
   * The fleet's one backward move, DEPLOYING (or QUEUED) → QUEUED, for a bot whose attempt on `platform`
   * failed, timed out or found it full before any container ran. Returns null when the bot has moved on
   * meanwhile.
   */
  requeue(botId: string, platform: string, outcome: AttemptDoc['outcome'], reason: string): Promise<BotDoc | null>;
  /** Ends a bot (ENDED or FATAL) with a reason, if it is not terminal yet. */
  end(botId: string, status: 'ENDED' | 'FATAL', reason: EndReason, message?: string): Promise<BotDoc | null>;
  event(botId: string, type: string, fields?: { message?: string; data?: unknown; reason?: string }): Promise<void>;
}

export function createLifecycle(repo: BotRepository, effects: LifecycleEffects): Lifecycle {
  const recordEvent: Lifecycle['event'] = (botId, type, fields = {}) =>
    repo.appendEvent(botId, { type, at: new Date(), ...fields });

  const tryTransition: Lifecycle['tryTransition'] = async (botId, to, request) => {
    const terminal = isTerminal(to);
    const set = { ...request.set };
    if (terminal) {
      const heartbeat = await effects.lastHeartbeat(botId);
      if (heartbeat) set.lastHeartbeatAt = heartbeat;
    }
    const updated = await repo.transition(botId, to, {
      endReason: terminal ? request.reason : undefined,
      set,
      event: {
        reason: typeof request.reason === 'string' ? request.reason : undefined,
        message: request.message,
        data: { source: request.source, ...(request.data as object) },
      },
    });
    if (!updated) return null;
    await effects.statusChanged(botId, to, request.source === 'bot');
    if (to === 'IN_CALL') metrics.createToInCallSeconds.observe(secondsSince(updated.createdAt));
    if (terminal) {
      metrics.botEnds.inc({ status: to, reason: updated.endReason ?? 'none' });
      logger.info('bot ended', { botId, status: to, endReason: updated.endReason, source: request.source });
      await Promise.all([effects.withdraw(botId), effects.publishEnded(botId)]);
      // A bot never placed leaves the live index now; a placed one when its container is confirmed gone
      // (occupy). Best effort: one left there is settled by the next recovery pass.
      if (!updated.platform) {
        await repo.unmarkLive(botId).catch((error) => logger.warn('could not unmark an ended bot', { botId, error: String(error) }));
      }
    }
    await effects.notify(updated);
    return updated;
  };

  return {
    tryTransition,
    async transition(botId, to, request) {
      const updated = await tryTransition(botId, to, request);
      if (updated) return updated;
      const current = await repo.findById(botId);
      if (!current) throw new NotFoundError(`bot ${botId} not found`);
      throw new TransitionError(current.status, to);
    },
    async requeue(botId, platform, outcome, reason) {
      const at = new Date();
      await recordEvent(botId, `attempt.${outcome}`, { reason, data: { platform } });
      const bot = await repo.requeue(botId, platform, { platform, outcome, reason, at });
      if (!bot) return null;
      await effects.statusChanged(botId, 'QUEUED', false);
      await effects.notify(bot);
      return bot;
    },
    end: (botId, status, reason, message) => tryTransition(botId, status, { reason, message, source: 'fleet' }),
    event: recordEvent,
  };
}
