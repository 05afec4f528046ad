import { PlatformSettings } from '../config';
import { choosePlatform } from '../domain/platform-choice';
import { logger } from '../logger';
import { metrics } from '../metrics';
import { Lifecycle } from '../services/lifecycle.service';
import { BotRepository } from '../store/bot.repository';
import { AttemptDoc, BotDoc } from '../store/models';
import { dispatchWakeJob, occupyJob, occupyJobId, scheduleJob } from '../../queues/queue-names';
import { Queues } from '../../queues/queues';
import { GlobalQueue } from './global-queue';
import { occupancyOf } from './occupancy';
import { PlatformControls } from './platform-controls';
import { coalesceWakeUps } from './wake-ups';

/**
 * Placement (docs/invariants.md). Bots wait in the global FIFO queue; the dispatcher, which BullMQ runs
 * one at a time across all processes, moves the oldest ones onto the first platform in priority order with
 * free capacity (src/domain/platform-choice.ts decides which) by adding an occupy job to that platform's
 * queue. It reads and writes Redis only, so its cost does not grow with the number of bots in the database.
 * Capacity is counted as the platform queue's unfinished jobs (src/domain/occupancy.ts), and only the
 * dispatcher adds them, so a platform never holds more jobs than its limit; BullMQ global concurrency (= limit) guards the same bound a second time.
 */
export interface PlatformStats {
  name: string;
  enabled: boolean;
  limit: number;
  active: number;
  queued: number;
  queueTimeoutMs: number;
  draining: boolean;
}

export interface Placement {
  /**
   * Puts a QUEUED bot into the global queue and wakes the dispatcher. Idempotent. Answers its 1-based
   * position when it entered.
   */
  enqueue(bot: Pick<BotDoc, '_id' | 'createdAt'>): Promise<number>;
  /** Places a SCHEDULED bot in the global queue shortly before `joinAt`. Idempotent. */
  schedule(botId: string, joinAt: Date): Promise<void>;
  position(botId: string): Promise<number | null>;
  /** The first `count` bot ids of the global queue, in order. */
  queueHead(count: number): Promise<string[]>;
  /**
   * Wakes the dispatcher: resolves once a wake-up sent after this call is in its queue (concurrent calls of
   * a process share one, see wake-ups.ts).
   */
  kick(reason: string): Promise<void>;
  /**
   * One dispatcher run; returns how many bots it placed. Only the dispatch worker calls it. `expire` (the
   * default) also applies the queue timeouts first: the dispatcher's tick does, a wake-up only places.
   */
  dispatch(options?: { expire?: boolean }): Promise<{ placed: number; expired: number; timedOut: number }>;
  stats(): Promise<{ platforms: PlatformStats[]; globalQueue: { length: number; oldestQueuedAt: string | null } }>;
  /**
   * Changes a platform's limit (at most the configured one; null restores it) or draining state at runtime,
   * for every process; returns its stats, or null for a platform this fleet does not run.
   */
  control(platform: string, change: { limit?: number | null; draining?: boolean }): Promise<PlatformStats | null>;
  /**
   * Hands a bot back to the global queue after an attempt on `platform` that failed, timed out, or found the
   * platform full. A failed or timed-out platform is excluded for the bot (src/domain/platform-choice.ts); a
   * full one is not: it is offered nothing for FULL_BACKOFF_MS, so the bot moves on at once.
   */
  handBack(botId: string, platform: string, outcome: AttemptDoc['outcome'], reason: string): Promise<void>;
}

export interface PlacementDeps {
  platforms: readonly PlatformSettings[];
  queues: Queues;
  globalQueue: GlobalQueue;
  controls: PlatformControls;
  repo: BotRepository;
  lifecycle: Lifecycle;
  globalQueueTimeoutMs: number;
  /** Scheduled bots are queued this long before their join time, so the container is up when it matters. */
  scheduleLeadMs?: number;
}

const BATCH = 100;
/** How long a platform that answered "no capacity" is offered no bots before it is asked again. */
const FULL_BACKOFF_MS = 10_000;
/** How far down the global queue one run looks for bots that fit the free platforms. */
const MAX_SCAN = 1000;

export function createPlacement(deps: PlacementDeps): Placement {
  const { queues, globalQueue, repo } = deps;
  const priority = deps.platforms.map((p) => p.name);
  const queueOf = (platform: string) => queues.platforms.get(platform)!;

  const kick: Placement['kick'] = coalesceWakeUps(async (reason) => {
    const { name, data, opts } = dispatchWakeJob(reason);
    await queues.dispatch.add(name, data, opts);
  });

  /** Bots holding the platform's capacity (src/domain/occupancy.ts), as `stats` shows them. */
  const occupied = async (platform: string) => (await occupancyOf(queueOf(platform))).occupied;

  /** The limit and draining state in force now: the configured limit, lowered or drained by an operator. */
  const inForce = async () => {
    const controls = await deps.controls.all();
    return new Map(
      deps.platforms.map((p) => {
        const control = controls.get(p.name) ?? {};
        return [p.name, { limit: Math.min(p.limit, control.limit ?? p.limit), draining: control.draining ?? false }];
      }),
    );
  };

  const freeCapacity = async () => {
    const [now, full, counts] = await Promise.all([
      inForce(),
      globalQueue.fullPlatforms(deps.platforms.map((p) => p.name)),
      Promise.all(deps.platforms.map((p) => occupied(p.name))),
    ]);
    return new Map(
      deps.platforms.map((p, index) => {
        const { limit, draining } = now.get(p.name)!;
        return [p.name, draining || full.has(p.name) ? 0 : Math.max(0, limit - counts[index])];
      }),
    );
  };

  const handBack: Placement['handBack'] = async (botId, platform, outcome, reason) => {
    metrics.deployFailures.inc({ platform, outcome });
    if (outcome === 'full') await globalQueue.markFull(platform, FULL_BACKOFF_MS);
    const bot = await deps.lifecycle.requeue(botId, platform, outcome, reason);
    if (!bot) return;
    if (outcome !== 'full') await globalQueue.exclude(botId, platform, outcome);
    logger.info('bot handed back to the global queue', { botId, platform, outcome, reason });
    // Its place in line is its creation; its queue timeout counts from when it was first queued, so a bot
    // bouncing between slow platforms cannot wait forever.
    await globalQueue.add(botId, bot.createdAt.getTime(), (bot.queuedAt ?? bot.createdAt).getTime());
    await kick(`hand-back from ${platform}`);
  };

  /** Bots whose wait in the global queue exceeded GLOBAL_QUEUE_TIMEOUT_MS become FATAL QUEUE_TIMEOUT. */
  const expireGlobal = async (now: number) => {
    const expired = await globalQueue.waitingSince(now - deps.globalQueueTimeoutMs, BATCH);
    for (const botId of expired) {
      await deps.lifecycle.end(botId, 'FATAL', 'QUEUE_TIMEOUT', `queued longer than ${deps.globalQueueTimeoutMs} ms`);
      await globalQueue.forget(botId);
    }
    return expired.length;
  };

  /**
   * Bots assigned to a platform that did not start deploying within its queue timeout move on (I3). Only a
   * job that never ran waits for its deploy: one that ran before (a parked job woken by its bot's end, a job
   * handed back at shutdown or retried) holds a bot that was claimed, and waits for a worker only.
   */
  const expirePlatformWaits = async (now: number) => {
    let count = 0;
    for (const settings of deps.platforms) {
      const waiting = await queueOf(settings.name).getJobs(['wait', 'prioritized'], 0, BATCH, true);
      for (const job of waiting) {
        if (!job || job.processedOn || now - job.timestamp <= settings.queueTimeoutMs) continue;
        try {
          await job.remove();
        } catch {
          continue; // it started meanwhile: the processor owns it now
        }
        count++;
        await handBack(
          job.data.botId,
          settings.name,
          'timed-out',
          `waited ${now - job.timestamp} ms for ${settings.name}`,
        );
      }
    }
    return count;
  };

  /**
   * Adds the occupy jobs, then takes the bots out of the queue, in a fixed number of round trips however many
   * there are; `inflight` covers a crash in between. A bot may come back to a platform it was handed back
   * from (it was full, or it timed out everywhere): the finished job of that earlier attempt keeps the id
   * taken, so it is removed first. Only a finished job is: one still waiting or active is this very
   * assignment, made before a crash. `before` (the assignments' events) is written alongside the first
   * round trip, so it is recorded before any occupy job exists.
   */
  const assign = async (assignments: Array<{ botId: string; platform: string }>, before?: Promise<void>) => {
    if (assignments.length === 0) return before;
    const [, states] = await Promise.all([
      globalQueue.markInflight(assignments),
      Promise.all(
        assignments.map(({ botId, platform }) => queueOf(platform).getJobState(occupyJobId(botId, platform))),
      ),
      before,
    ]);
    await Promise.all(
      assignments
        .filter((_, index) => states[index] === 'completed' || states[index] === 'failed')
        .map(({ botId, platform }) => queueOf(platform).remove(occupyJobId(botId, platform))),
    );
    const platforms = [...new Set(assignments.map(({ platform }) => platform))];
    await Promise.all(
      platforms.map((platform) =>
        queueOf(platform).addBulk(
          assignments.filter((data) => data.platform === platform).map(({ botId }) => occupyJob(botId, platform)),
        ),
      ),
    );
    await globalQueue.completeAssignments(assignments.map(({ botId }) => botId));
  };

  const finishInterruptedAssignments = async (interrupted: Record<string, string>) => {
    for (const [botId, platform] of Object.entries(interrupted)) {
      if (!queues.platforms.has(platform)) {
        await globalQueue.completeAssignments([botId]);
        continue;
      }
      // A finished job: this assignment's attempt already ran to its end (the bot was handed back and waits
      // in the queue again, or it ended and was withdrawn), or the assignment died before adding its job and
      // this is an earlier attempt's. Either way the queue says where the bot stands, and a bot still in it
      // is placed afresh below, with the exclusions its attempts left, rather than sent back here blindly.
      const state = await queueOf(platform).getJobState(occupyJobId(botId, platform));
      if (state === 'completed' || state === 'failed') {
        await globalQueue.clearInflight([botId]);
        continue;
      }
      // Unfinished (or never added): adding again never makes a second job, the id is deterministic.
      await assign([{ botId, platform }]);
    }
  };

  const stats: Placement['stats'] = async () => {
    const now = await inForce();
    const platforms = await Promise.all(
      deps.platforms.map(async (p) => {
        // active + queued is what the dispatcher counts against the limit
        const { active, queued } = await occupancyOf(queueOf(p.name));
        return {
          name: p.name,
          enabled: true,
          limit: now.get(p.name)!.limit,
          active,
          queued,
          queueTimeoutMs: p.queueTimeoutMs,
          draining: now.get(p.name)!.draining,
        };
      }),
    );
    return { platforms, globalQueue: await globalQueue.stats() };
  };

  const dispatch: Placement['dispatch'] = async ({ expire = true } = {}) => {
    const [rebuilt, interrupted] = await Promise.all([globalQueue.isRebuilt(), globalQueue.inflight()]);
    // After Redis lost its data, recovered bots take their capacity back before anyone new is placed.
    if (!rebuilt) return { placed: 0, expired: 0, timedOut: 0 };
    const now = Date.now();
    await finishInterruptedAssignments(interrupted);
    // Platform waits first: a bot they hand back is then in the global queue when its own timeout is checked.
    // Timeouts count in seconds, so checking them once per tick is enough, and a wake-up (capacity freed, a
    // bot created) goes straight to placing.
    const timedOut = expire ? await expirePlatformWaits(now) : 0;
    const expired = expire ? await expireGlobal(now) : 0;
    let placed = 0;
    const free = await freeCapacity();
    const totalFree = () => [...free.values()].reduce((sum, n) => sum + n, 0);
    const assigned: Array<{ botId: string; platform: string; skippedFull: string[] }> = [];
    let offset = 0;
    while (totalFree() > 0 && offset < MAX_SCAN) {
      const ids = await globalQueue.head(offset, Math.min(BATCH, totalFree() * 2));
      if (ids.length === 0) break;
      const excluded = await globalQueue.excludedOf(ids);
      const round: Array<{ botId: string; platform: string }> = [];
      let kept = 0;
      for (const [index, botId] of ids.entries()) {
        const choice = choosePlatform(priority, excluded[index], free);
        if (choice.kind === 'deploy-failed') {
          await deps.lifecycle.end(botId, 'FATAL', 'DEPLOY_FAILED', 'the deploy failed on every platform');
          await globalQueue.forget(botId);
          continue;
        }
        if (choice.forgiveTimeouts) await globalQueue.forgiveTimeouts(botId);
        if (choice.kind === 'wait') {
          kept++; // waits for one of its own platforms; younger bots may still fit elsewhere
          continue;
        }
        const { platform, skippedFull } = choice;
        free.set(platform, free.get(platform)! - 1);
        round.push({ botId, platform });
        assigned.push({ botId, platform, skippedFull });
        placed++;
        if (totalFree() === 0) break;
      }
      // Recorded before the occupy jobs exist, so each comes before its bot's claim in the bot's history.
      const at = new Date();
      const events = repo.appendEvents(
        assigned.splice(0).map(({ botId, platform, skippedFull }) => ({
          botId,
          type: 'attempt.assigned',
          at,
          data: { platform, skippedFull },
        })),
      );
      await assign(round, events);
      offset += kept;
    }
    return { placed, expired, timedOut };
  };

  return {
    async enqueue(bot) {
      const { position } = await globalQueue.add(String(bot._id), bot.createdAt.getTime());
      await kick('created');
      return position;
    },
    async schedule(botId, joinAt) {
      const delay = Math.max(0, joinAt.getTime() - (deps.scheduleLeadMs ?? 60_000) - Date.now());
      const { name, data, opts } = scheduleJob(botId, delay);
      await queues.schedule.add(name, data, opts);
    },
    position: (botId) => globalQueue.position(botId),
    queueHead: (count) => globalQueue.head(0, count),
    kick,
    dispatch,
    handBack,
    stats,
    async control(platform, change) {
      if (!queues.platforms.has(platform)) return null;
      await deps.controls.update(platform, change);
      await kick(`platform ${platform} changed`);
      return (await stats()).platforms.find((p) => p.name === platform)!;
    },
  };
}
