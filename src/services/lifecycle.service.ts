import { BotStatus, EndReason, isTerminal } from '../domain/bot.lifecycle';
import { TransitionRequest as DomainRequest } from '../domain/transition';
import { NotFoundError } from '../errors';
import { logger } from '../logger';
import { metrics, secondsSince } from '../metrics';
import { SetChange } from '../store/bot-changes';
import { BotRepository } from '../store/bot.repository';
import { AttemptDoc, BotDoc } from '../store/models';

/**
 * Every status change of every bot goes through here, whoever asks (the bot, a client, a worker, a sweep):
 * one Redis step applies the decided change, records its event and moves the due-sets, and a terminal
 * status triggers the release (queue withdrawal and the end signal that makes the holder stop the container).
 */
export interface LifecycleEffects {
  /** Removes a bot from every queue it may wait in. */
  withdraw(botId: string): Promise<void>;
  /** Tells the process holding the bot's platform capacity to stop its container. */
  publishEnded(botId: string): Promise<void>;
  /**
   * What a status change does to the sweeps' due-sets (a terminal one forgets the bot), made in the same
   * Redis step as the change.
   */
  dueSetChanges(botId: string, status: BotStatus, bySelf: boolean): SetChange[];
  lastHeartbeat(botId: string): Promise<Date | null>;
  /** Announces a status change to the bot's callbackUrl, if it has one. */
  notify(bot: BotDoc): Promise<void>;
}

export interface TransitionRequest {
  /** The end reason of a terminal move (a bot's own report without one gets the lifecycle's default). */
  reason?: EndReason;
  message?: string;
  set?: Partial<BotDoc>;
  source: 'bot' | 'client' | 'fleet';
  data?: Record<string, unknown>;
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
  /**
   * The atomic QUEUED → DEPLOYING claim before a deploy on `platform`: a bot cancelled while queued can never
   * get past it. Returns the claimed bot, or the bot as it is when it was not QUEUED (null if there is none).
   */
  claim(botId: string, platform: string): Promise<{ claimed: boolean; bot: BotDoc } | null>;
  /** Ends a bot (ENDED or FATAL) with a reason, if it is not terminal yet. */
  end(botId: string, status: 'ENDED' | 'FATAL', reason: EndReason, message?: string): Promise<BotDoc | null>;
  event(botId: string, type: string, fields?: { message?: string; data?: unknown; reason?: string }): Promise<void>;
}

export function createLifecycle(repo: BotRepository, effects: LifecycleEffects): Lifecycle {
  const recordEvent: Lifecycle['event'] = (botId, type, fields = {}) =>
    repo.appendEvent(botId, { type, at: new Date(), ...fields });

  /** Applies the request and, once it is recorded, what follows from the new status. */
  const apply = async (botId: string, request: DomainRequest) => {
    const bySelf = request.kind === 'move' && request.source === 'bot';
    const outcome = await repo.transition(botId, request, (next) => effects.dueSetChanges(botId, next.status, bySelf));
    if (!outcome || outcome.refused) return outcome;
    const bot = outcome.bot;
    if (bot.status === 'IN_CALL') metrics.createToInCallSeconds.observe(secondsSince(bot.createdAt));
    if (isTerminal(bot.status)) {
      metrics.botEnds.inc({ status: bot.status, reason: bot.endReason ?? 'none' });
      logger.info('bot ended', { botId, status: bot.status, endReason: bot.endReason, source: request.kind === 'move' ? request.source : 'fleet' });
      await Promise.all([effects.withdraw(botId), effects.publishEnded(botId)]);
      // A bot never placed leaves the live index now; a placed one when its container is confirmed gone
      // (occupy). Best effort: one left there is settled by the next recovery pass.
      if (!bot.platform) {
        await repo.unmarkLive(botId).catch((error) => logger.warn('could not unmark an ended bot', { botId, error: String(error) }));
      }
    }
    await effects.notify(bot);
    return outcome;
  };

  const move = async (botId: string, to: BotStatus, request: TransitionRequest) => {
    const set = { ...request.set };
    if (isTerminal(to)) {
      const heartbeat = await effects.lastHeartbeat(botId);
      if (heartbeat) set.lastHeartbeatAt = heartbeat;
    }
    return apply(botId, { kind: 'move', to, ...request, set });
  };

  const tryTransition: Lifecycle['tryTransition'] = async (botId, to, request) => {
    const outcome = await move(botId, to, request);
    return outcome && !outcome.refused ? outcome.bot : null;
  };

  return {
    tryTransition,
    async transition(botId, to, request) {
      const outcome = await move(botId, to, request);
      if (!outcome) throw new NotFoundError(`bot ${botId} not found`);
      if (outcome.refused) throw outcome.refused;
      return outcome.bot;
    },
    async requeue(botId, platform, outcome, reason) {
      const at = new Date();
      await recordEvent(botId, `attempt.${outcome}`, { reason, data: { platform } });
      const result = await apply(botId, { kind: 'requeue', platform, attempt: { platform, outcome, reason, at } });
      return result && !result.refused ? result.bot : null;
    },
    async claim(botId, platform) {
      const outcome = await apply(botId, {
        kind: 'move',
        to: 'DEPLOYING',
        onlyFrom: 'QUEUED',
        source: 'fleet',
        set: { platform, platformIdentifier: null, deployingAt: new Date() },
        data: { platform },
      });
      return outcome && { claimed: !outcome.refused, bot: outcome.bot };
    },
    end: (botId, status, reason, message) => tryTransition(botId, status, { reason, message, source: 'fleet' }),
    event: recordEvent,
  };
}
