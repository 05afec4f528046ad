import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { isTerminal, LIVE_STATUSES } from '../domain/bot.lifecycle';
import { isUnfinished, UNFINISHED_JOB_STATES } from '../domain/occupancy';
import { Logger } from '../logger';
import { timedSweep } from '../metrics';
import { BotRepository } from '../store/bot.repository';
import { LiveState } from '../store/live-state';
import { BotDoc } from '../store/models';
import { occupyJob, occupyJobId } from '../../queues/queue-names';
import { Queues } from '../../queues/queues';
import { GlobalQueue } from './global-queue';
import { occupyingBotIds } from './occupancy';
import { Placement } from './placement.service';

/**
 * Rebuilds Redis (the working state) from MongoDB (the durable record) for every bot that has not ended:
 * once when a fleet starts and then every interval, by one process at a time (a Redis lock that outlives a
 * flush of everything else). It reads the live index, asks Redis which of those bots it still holds (by an
 * unfinished occupy or schedule job: one round trip per queue; in the global queue: one pipeline per 500
 * live bots), and reads the bot document only for the ones it does not. A bot
 * Redis lost:
 * - QUEUED: back into the global queue at its original place (creation order), with its queue-timeout clock
 *   (`queuedAt`) and the platforms its earlier attempts excluded;
 * - on a platform (DEPLOYING … LEAVING): its occupy job is added again, so the platform's capacity counts it
 *   and the job adopts the container by its deterministic name (or ends the bot CONTAINER_LOST when the
 *   platform confirms it is gone; never deploys a second one), with its deadlines re-armed from now;
 * - SCHEDULED: its schedule job is made again;
 * - ended but still in the index (its container not confirmed gone): held again, so its job stops what is
 *   left on the platform before the capacity counts as free.
 * Until a pass has completed since Redis lost its data, the dispatcher places nobody (see GlobalQueue
 * `isRebuilt`), so recovered bots take their capacity before new ones do.
 */
export interface RecoveryDeps {
  redis: Redis;
  prefix: string;
  repo: BotRepository;
  globalQueue: GlobalQueue;
  liveState: LiveState;
  queues: Queues;
  placement: Placement;
  leaveGraceMs: number;
  /** Puts back what lives only in Redis and every process sets at startup: job schedulers, global limits. */
  restoreQueues(): Promise<void>;
  log: Logger;
}

export interface RecoveryResult {
  /** Bots in the live index. */
  live: number;
  /** Bot documents read (only for bots Redis did not track). */
  read: number;
  requeued: number;
  reheld: number;
  rescheduled: number;
  /** Live-index entries of bots that ended or never got a document. */
  dropped: number;
}

const CHUNK = 500;
/** A live-index entry this old without a bot document is a create that died half-way. */
const ORPHAN_AFTER_MS = 60_000;

export function createRecovery(deps: RecoveryDeps) {
  const { repo, globalQueue, liveState, queues } = deps;
  const lockKey = `${deps.prefix}:recovery:lock`;
  const workersAliveKey = `${deps.prefix}:recovery:workers-alive`;
  const restartedKey = `${deps.prefix}:recovery:fleet-restarted`;

  /** Whether the bot holds the platform's capacity (src/domain/occupancy.ts). */
  const occupyJobUnfinished = async (botId: string, platform: string) => {
    const queue = queues.platforms.get(platform);
    if (!queue) return false;
    return isUnfinished(await queue.getJobState(occupyJobId(botId, platform)));
  };

  /**
   * The bots an unfinished job holds (an occupy job on any platform, that is, the bots holding capacity, or
   * a schedule job), in one round trip per queue. A heartbeat is no such sign: a running bot heartbeats
   * again as soon as the API answers, whether or not anything holds its capacity. Read once per pass after
   * the live index: a bot placed meanwhile is read and found held below, one finished meanwhile waits for
   * the next pass.
   */
  const heldByJobs = async (): Promise<Set<string>> => {
    const [occupying, scheduled] = await Promise.all([
      Promise.all([...queues.platforms.values()].map(occupyingBotIds)),
      queues.schedule.getRanges([...UNFINISHED_JOB_STATES], 0, -1),
    ]);
    return new Set([...occupying.flat(), ...scheduled]);
  };

  const requeue = async (bot: BotDoc) => {
    const botId = String(bot._id);
    for (const platform of queues.platforms.keys()) {
      if (await occupyJobUnfinished(botId, platform)) return false; // assigned, waiting for that platform
    }
    for (const attempt of bot.attempts ?? []) {
      if (attempt.outcome === 'failed' || attempt.outcome === 'timed-out') {
        await globalQueue.exclude(botId, attempt.platform, attempt.outcome);
      }
    }
    return (await globalQueue.add(botId, bot.createdAt.getTime(), (bot.queuedAt ?? bot.createdAt).getTime())).added;
  };

  const rehold = async (bot: BotDoc) => {
    const botId = String(bot._id);
    const platform = bot.platform;
    const queue = platform ? queues.platforms.get(platform) : undefined;
    if (!platform || !queue) {
      deps.log.warn('a live bot is on a platform this fleet no longer runs; heartbeat expiry will end it', {
        botId,
        platform,
      });
      await liveState.statusChanged(botId, bot.status, true);
      return false;
    }
    if (await occupyJobUnfinished(botId, platform)) return false;
    const jobId = occupyJobId(botId, platform);
    await (await queue.getJob(jobId))?.remove(); // a finished job of that id would make the add a no-op
    const { name, data, opts } = occupyJob(botId, platform);
    await queue.add(name, data, opts);
    await liveState.statusChanged(botId, bot.status, true);
    if (bot.status === 'LEAVING' && bot.leaveRequestedAt)
      await liveState.requestLeave(botId, Date.now() + deps.leaveGraceMs);
    return true;
  };

  const reschedule = async (bot: BotDoc) => {
    const botId = String(bot._id);
    if (isUnfinished(await queues.schedule.getJobState(botId))) return false;
    await (await queues.schedule.getJob(botId))?.remove();
    await deps.placement.schedule(botId, bot.joinAt ?? new Date());
    return true;
  };

  /** One pass. `restarted`: the fleet has just started, so every kept deadline counts from now. */
  const recover = async (restarted: boolean): Promise<RecoveryResult> => {
    const result: RecoveryResult = { live: 0, read: 0, requeued: 0, reheld: 0, rescheduled: 0, dropped: 0 };
    const wasRebuilt = await globalQueue.isRebuilt();
    // A pass that starts rebuilt does not mark it again: if Redis loses its data during the pass, what the
    // pass skipped as held may be gone, and the next pass must rebuild. A rebuilding pass marks it only if
    // Redis lost nothing since it began.
    const rebuild = wasRebuilt ? null : await globalQueue.beginRebuild();
    if (rebuild) await deps.restoreQueues();
    const live = await repo.liveBots();
    result.live = live.length;
    const held = await heldByJobs();
    for (let i = 0; i < live.length; i += CHUNK) {
      const ids = live.slice(i, i + CHUNK).map((entry) => entry.id);
      if (restarted) await liveState.restartDeadlines(ids);
      const queued = await globalQueue.holds(ids);
      for (const [index, botId] of ids.entries()) {
        if (queued[index] || held.has(botId)) continue;
        result.read++;
        const bot = await repo.findById(botId);
        if (!bot) {
          if (Date.now() - live[i + index].createdAt.getTime() > ORPHAN_AFTER_MS) {
            await repo.unmarkLive(botId);
            result.dropped++;
          }
          continue;
        }
        if (isTerminal(bot.status) && bot.platform && queues.platforms.has(bot.platform)) {
          // Ended, but not confirmed gone from its platform: held again, so its job stops what is left and
          // only then frees the capacity (and unmarks it).
          if (await rehold(bot)) result.reheld++;
        } else if (isTerminal(bot.status)) {
          await repo.unmarkLive(botId);
          result.dropped++;
        } else if (bot.status === 'QUEUED') {
          if (await requeue(bot)) result.requeued++;
        } else if (bot.status === 'SCHEDULED') {
          if (await reschedule(bot)) result.rescheduled++;
        } else if (LIVE_STATUSES.includes(bot.status)) {
          if (await rehold(bot)) result.reheld++;
        }
      }
    }
    if (rebuild && !(await globalQueue.markRebuilt(rebuild))) {
      deps.log.warn('Redis lost its data during a recovery pass; the next pass rebuilds again');
    }
    if (result.requeued || !wasRebuilt) await deps.placement.kick('recovery');
    if (result.requeued || result.reheld || result.rescheduled || result.dropped) {
      deps.log.info('recovery rebuilt working state from the database', { ...result });
    }
    return result;
  };

  return {
    recover,
    /**
     * Called by every worker process every `intervalMs`: runs a pass unless another process ran one less than
     * `intervalMs` ago (or is running one); returns null when it did not run. When no worker of the fleet
     * called it for three intervals, the fleet was down, and the next pass (whichever process runs it)
     * restarts the deadlines its bots could not keep while nobody answered them.
     */
    async runExclusive(intervalMs: number): Promise<RecoveryResult | null> {
      const fleetWasDown = (await deps.redis.set(workersAliveKey, '1', 'PX', intervalMs * 3, 'NX')) === 'OK';
      if (fleetWasDown) await deps.redis.set(restartedKey, '1');
      else await deps.redis.pexpire(workersAliveKey, intervalMs * 3);
      const token = randomBytes(8).toString('hex');
      if ((await deps.redis.set(lockKey, token, 'PX', intervalMs, 'NX')) !== 'OK') return null;
      const restarted = (await deps.redis.getdel(restartedKey)) !== null;
      const result = await timedSweep('recovery', () => recover(restarted));
      await deps.redis.incr(`${deps.prefix}:sweeps:recovery:runs`);
      return result;
    },
  };
}

export type Recovery = ReturnType<typeof createRecovery>;

/**
 * Runs a recovery pass now and then every `intervalMs`, each after the previous one finished; returns the
 * stopper. A plain timer, not a BullMQ scheduler, so it keeps running after Redis lost its data.
 */
export function runRecoveryEvery(recovery: Recovery, intervalMs: number, log: Logger): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const run = () => {
    recovery
      .runExclusive(intervalMs)
      .catch((error) => log.warn('recovery pass failed', { error: String(error) }))
      .finally(() => {
        if (!stopped) timer = setTimeout(run, intervalMs);
      });
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
