import { isTerminal, LIVE_STATUSES } from '../src/domain/bot.lifecycle';
import { logger } from '../src/logger';
import { Platform } from '../src/platforms/platform';
import { Lifecycle } from '../src/services/lifecycle.service';
import { BotRepository } from '../src/store/bot.repository';
import { DueSet, LiveState } from '../src/store/live-state';
import { WebhookOutbox } from '../src/webhooks/webhook-outbox';

/**
 * The health sweeps (docs/invariants.md, health). Each reads only the entries of a Redis due-set whose
 * time has come, so its cost follows the bots it acts on, not the bots alive. Each returns what it read and
 * what it did, which is also how the tests check that cost.
 */
export interface SweepDeps {
  liveState: LiveState;
  repo: BotRepository;
  lifecycle: Lifecycle;
  outbox: WebhookOutbox;
  heartbeatTimeoutMs: number;
  deployTimeoutMs: number;
}

export interface SweepResult {
  /** Bot ids read from the due-set. */
  read: number;
  /** Bots moved to a terminal status. */
  acted: number;
}

const BATCH = 500;

/** Reads due entries in batches; `act` returns true when it ended the bot, false to drop a stale entry. */
async function sweepDue(
  deps: SweepDeps,
  set: DueSet,
  dueBefore: number,
  act: (botId: string) => Promise<boolean>,
): Promise<SweepResult> {
  const result: SweepResult = { read: 0, acted: 0 };
  for (;;) {
    const ids = await deps.liveState.due(set, dueBefore, BATCH);
    result.read += ids.length;
    for (const botId of ids) {
      if (await act(botId)) result.acted++;
      // Handled either way; an entry refreshed meanwhile (a heartbeat just arrived) stays.
      await deps.liveState.clear(set, botId, dueBefore);
    }
    if (ids.length < BATCH) return result;
  }
}

/** A live bot silent for HEARTBEAT_TIMEOUT_MS becomes FATAL HEARTBEAT_TIMEOUT; its holder then stops it. */
export function sweepHeartbeats(deps: SweepDeps, now = Date.now()): Promise<SweepResult> {
  return sweepDue(deps, 'heartbeats', now - deps.heartbeatTimeoutMs, async (botId) => {
    const bot = await deps.repo.findById(botId);
    if (!bot || !LIVE_STATUSES.includes(bot.status)) return false;
    if (bot.status === 'LEAVING' && bot.leaveRequestedAt) return false; // the leave grace decides
    const ended = await deps.lifecycle.end(
      botId,
      'FATAL',
      'HEARTBEAT_TIMEOUT',
      `no heartbeat for ${deps.heartbeatTimeoutMs} ms`,
    );
    return ended !== null;
  });
}

/** A bot DEPLOYING for longer than DEPLOY_TIMEOUT_MS becomes FATAL DEPLOY_TIMEOUT. */
export function sweepDeployTimeouts(deps: SweepDeps, now = Date.now()): Promise<SweepResult> {
  return sweepDue(deps, 'deploying', now - deps.deployTimeoutMs, async (botId) => {
    const bot = await deps.repo.findById(botId);
    if (bot?.status !== 'DEPLOYING') return false;
    return (
      (await deps.lifecycle.end(botId, 'FATAL', 'DEPLOY_TIMEOUT', `deploying for over ${deps.deployTimeoutMs} ms`)) !==
      null
    );
  });
}

/** A bot asked to leave that is still around after LEAVE_GRACE_MS is ended (LEFT) and its container stopped. */
export function sweepLeaveGrace(deps: SweepDeps, now = Date.now()): Promise<SweepResult> {
  return sweepDue(deps, 'leave-deadlines', now, async (botId) => {
    const bot = await deps.repo.findById(botId);
    if (!bot || isTerminal(bot.status)) return false;
    return (await deps.lifecycle.end(botId, 'ENDED', 'LEFT', 'did not leave within the grace period')) !== null;
  });
}

export interface ReconcileDeps {
  repo: BotRepository;
  lifecycle: Lifecycle;
  platform: Platform;
  /** Bots holding this platform's capacity (src/domain/occupancy.ts): the ones the fleet believes are on it. */
  heldBotIds(): Promise<string[]>;
  /** Bots whose occupy job is parked (delayed), and how to wake one. */
  parkedBotIds(): Promise<string[]>;
  wake(botId: string): Promise<void>;
  /** A container younger than this is not declared lost (it may not be visible yet). */
  settleMs: number;
}

/**
 * Reconciliation compares the platform's own list of containers (one call) with the bots the fleet holds on
 * it, and reads the database only where the two disagree, so its cost follows the discrepancies, not the
 * number of live bots: a held bot whose container is not listed becomes FATAL CONTAINER_LOST once the
 * platform confirms it is gone; a listed container whose bot is not held is stopped if its bot has ended.
 */
export async function reconcilePlatform(
  deps: ReconcileDeps,
  now = Date.now(),
): Promise<SweepResult & { stopped: number; lostStarts: number }> {
  const result = { read: 0, acted: 0, stopped: 0, lostStarts: 0 };
  // Held first: a bot placed after this read is not held here, and its container is then left alone below
  // because its bot is live.
  const held = new Set(await deps.heldBotIds());
  let parked: Set<string> | undefined;
  const containers = await deps.platform.list();
  const listed = new Set(containers.map((container) => container.botId));

  for (const botId of held) {
    if (listed.has(botId)) continue;
    result.read++;
    const bot = await deps.repo.findById(botId);
    if (!bot || !LIVE_STATUSES.includes(bot.status) || bot.platform !== deps.platform.name) continue;
    // Not deployed yet, or too recently to be listed.
    if (!bot.platformIdentifier || !bot.deployedAt || now - bot.deployedAt.getTime() < deps.settleMs) continue;
    // A container that is gone before its bot ever reported is its occupy job's to judge, as a failed start:
    // a job watching the start does so itself; a job parked (the platform said it ran) is woken to.
    const starting = bot.status === 'DEPLOYING';
    if (starting && !(parked ??= new Set(await deps.parkedBotIds())).has(botId)) continue;
    const { state, detail } = await deps.platform.status(bot.platformIdentifier);
    if (state !== 'gone') continue;
    if (starting) {
      await deps.wake(botId);
      result.lostStarts++;
      continue;
    }
    const ended = await deps.lifecycle.end(
      botId,
      'FATAL',
      'CONTAINER_LOST',
      `container ${bot.platformIdentifier} is gone${detail ? `: ${detail}` : ''}`,
    );
    if (ended) result.acted++;
  }

  for (const container of containers) {
    if (container.botId && held.has(container.botId)) continue;
    result.read++;
    const bot = container.botId ? await deps.repo.findById(container.botId) : null;
    if (bot && !isTerminal(bot.status)) continue; // e.g. waiting to be adopted after its worker died
    logger.warn('stopping a container whose bot has ended', {
      botId: container.botId,
      identifier: container.identifier,
    });
    await deps.platform.stop(container.identifier);
    result.stopped++;
  }
  return result;
}

/**
 * How long a bot's webhook events may wait before the sweep wakes their delivery again: far longer than a
 * delivery job takes to start, so it wakes only the ones whose wake-up was lost (or that are being retried,
 * where the wake-up is a no-op).
 */
export const WEBHOOK_REWAKE_AFTER_MS = 30_000;

/** Wakes the delivery of webhook events waiting for longer than WEBHOOK_REWAKE_AFTER_MS (see WebhookOutbox). */
export async function sweepWebhookWakes(deps: Pick<SweepDeps, 'outbox'>, now = Date.now()): Promise<SweepResult> {
  const result: SweepResult = { read: 0, acted: 0 };
  for (;;) {
    const ids = await deps.outbox.waitingSince(now - WEBHOOK_REWAKE_AFTER_MS, BATCH);
    result.read += ids.length;
    // each one leaves the range: woken ones count their wait from now, settled ones leave the set
    for (const botId of ids) if (await deps.outbox.rewake(botId)) result.acted++;
    if (ids.length < BATCH) return result;
  }
}
