import { BotStatus, EndReason, isTerminal } from '../domain/bot.lifecycle';
import { TransitionRequest as DomainRequest } from '../domain/transition';
import { NotFoundError } from '../errors';
import { logger } from '../logger';
import { metrics, secondsSince } from '../metrics';
import { KeyChange } from '../store/bot-changes';
import { BotRepository, TransitionOutcome } from '../store/bot.repository';
import { AttemptDoc, BotDoc } from '../store/models';

/**
 * Every status change of every bot goes through here, whoever asks (the bot, a client, a worker, a sweep):
 * one Redis step applies the decided change, records its event and moves the due-sets; in that step an end
 * also leaves the global queue and is announced (which makes the holder stop the container), and the bot is
 * then withdrawn from the job queues.
 */
export interface LifecycleEffects {
  /** Takes an ended bot out of every job queue it may wait in (on `platform`'s alone once one claimed it). */
  withdraw(botId: string, platform: string | null): Promise<void>;
  /**
   * What a status change does to other keys, made in the same Redis step as the change: the sweeps'
   * due-sets, and for a terminal one the global queue and the end signal.
   */
  changesAlongside(botId: string, status: BotStatus, bySelf: boolean): KeyChange[];
  /** The webhook event of the bot's new status (for its callbackUrl), recorded in the same Redis step. */
  announce(bot: BotDoc): KeyChange[];
  lastHeartbeat(botId: string): Promise<Date | null>;
  /** Wakes the delivery of the status change's webhook event, if the bot has a callbackUrl. */
  notify(bot: BotDoc): Promise<void>;
}

export interface TransitionRequest {
  /** The end reason of a terminal move (a bot's own report without one gets the lifecycle's default). */
  reason?: EndReason;
  message?: string;
  set?: Partial<BotDoc>;
  source: 'bot' | 'client' | 'fleet';
  data?: Record<string, unknown>;
  /** Only a bot of this owner (a client's request): another owner's is answered as no bot. */
  ownerId?: string;
}

export interface Lifecycle {
  /** Applies a transition or throws TransitionError (409) / NotFoundError (404). */
  transition(botId: string, to: BotStatus, request: TransitionRequest): Promise<BotDoc>;
  /** Same, but returns null where `transition` would throw. */
  tryTransition(botId: string, to: BotStatus, request: TransitionRequest): Promise<BotDoc | null>;
  /** Same, but answers the refusal with the bot as it is, and null where there is no such bot. */
  transitionOrRefusal(botId: string, to: BotStatus, request: TransitionRequest): Promise<TransitionOutcome | null>;
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
  event: (botId: string, type: string, fields?: { message?: string; data?: unknown; reason?: string }) => Promise<void>;
}

export function createLifecycle(repo: BotRepository, effects: LifecycleEffects): Lifecycle {
  const recordEvent: Lifecycle['event'] = (botId, type, fields = {}) =>
    repo.appendEvent(botId, { type, at: new Date(), ...fields });

  /** Applies the request and, once it is recorded, what follows from the new status. */
  const apply = async (botId: string, request: DomainRequest, ownerId?: string) => {
    const bySelf = request.kind === 'move' && request.source === 'bot';
    const alongside = (next: BotDoc) => [
      ...effects.changesAlongside(botId, next.status, bySelf),
      ...effects.announce(next),
    ];
    const outcome = await repo.transition(botId, request, { alongside, ownerId });
    if (!outcome || outcome.refused) return outcome;
    const bot = outcome.bot;
    if (bot.status === 'IN_CALL') metrics.createToInCallSeconds.observe(secondsSince(bot.createdAt));
    if (isTerminal(bot.status)) {
      metrics.botEnds.inc({ status: bot.status, reason: bot.endReason ?? 'none' });
      logger.info('bot ended', {
        botId,
        status: bot.status,
        endReason: bot.endReason,
        source: request.kind === 'move' ? request.source : 'fleet',
      });
      await effects.withdraw(botId, bot.platform);
      // A bot never placed leaves the live index now; a placed one when its container is confirmed gone
      // (occupy). Best effort: one left there is settled by the next recovery pass.
      if (!bot.platform) {
        await repo
          .unmarkLive(botId)
          .catch((error) => logger.warn('could not unmark an ended bot', { botId, error: String(error) }));
      }
    }
    await effects.notify(bot);
    return outcome;
  };

  const move = async (botId: string, to: BotStatus, { ownerId, ...request }: TransitionRequest) => {
    const set = { ...request.set };
    if (isTerminal(to)) {
      const heartbeat = await effects.lastHeartbeat(botId);
      if (heartbeat) set.lastHeartbeatAt = heartbeat;
    }
    return apply(botId, { kind: 'move', to, ...request, set }, ownerId);
  };

  const tryTransition: Lifecycle['tryTransition'] = async (botId, to, request) => {
    const outcome = await move(botId, to, request);
    return outcome && !outcome.refused ? outcome.bot : null;
  };

  return {
    tryTransition,
    transitionOrRefusal: move,
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
        set: { platform, platformIdentifier: null, startTry: 0, deployingAt: new Date() },
        data: { platform },
      });
      return outcome && { claimed: !outcome.refused, bot: outcome.bot };
    },
    end: (botId, status, reason, message) => tryTransition(botId, status, { reason, message, source: 'fleet' }),
    event: recordEvent,
  };
}
