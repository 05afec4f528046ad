import { PlatformSettings } from '../src/config';
import { isTerminal, LIVE_STATUSES } from '../src/domain/bot.lifecycle';
import { Logger } from '../src/logger';
import { deploymentName, Deployment, Platform, PlatformError } from '../src/platforms/platform';
import { metrics, secondsSince } from '../src/metrics';
import { withRetries } from '../src/retry';
import { Lifecycle } from '../src/services/lifecycle.service';
import { BotRepository } from '../src/store/bot.repository';
import { BotDoc } from '../src/store/models';
import { DeploySlots } from '../src/placement/deploy-slots';
import { EndSignals } from '../src/placement/end-signals';
import { Placement } from '../src/placement/placement.service';

/**
 * One bot's stay on one platform, run as a BullMQ job that stays unfinished for as long as the bot occupies
 * the platform: deploy (or adopt after a crash), wait until the bot ends, stop, and only then complete,
 * which frees the capacity. If the worker dies, BullMQ re-runs the stalled job first and this code adopts
 * the running container instead of deploying a second one (PRODUCT.md I1, I2).
 *
 * How the job waits depends on the platform. One whose containers only the deploying process can stop
 * (`stopsOnlyWhereDeployed`) keeps the job active and listens for the end signal. Any other is `parked`:
 * once the container runs, the job becomes a delayed BullMQ job (still unfinished, so the platform's
 * capacity counts it, and recovery and reconciliation see it held) and the worker forgets it. Ending the
 * bot wakes it (withdrawal.ts promotes it; reconciliation wakes any whose bot ended meanwhile, and every
 * PARKED_RECHECK_MS it wakes on its own); the woken run stops the container and completes.
 */
export interface OccupyContext {
  settings: PlatformSettings;
  platform: Platform;
  repo: BotRepository;
  lifecycle: Lifecycle;
  placement: Placement;
  slots: DeploySlots;
  endSignals: EndSignals;
  /** Builds the container env for a bot (PRODUCT.md section 5), including its own token. */
  botEnv(bot: BotDoc): Record<string, string>;
  log: Logger;
}

export interface OccupyJob {
  botId: string;
  /** This run wakes a parked job: its bot was running when it was parked. */
  parked: boolean;
  /** When the job was added (the start of its wait for this platform). */
  queuedAtMs: number;
  /** Aborted when this process shuts down: the job is handed back to BullMQ, the container keeps running. */
  signal: AbortSignal;
}

export type OccupyOutcome = 'released' | 'ended-before-deploy' | 'handed-back' | 'not-ours' | 'shutting-down' | 'parked';

const DEPLOY_RETRIES = 3;
const STOP_RETRIES = 5;
/** Polling a starting container: the first pause, doubling up to the last, each with jitter. */
const START_POLL_FIRST_MS = 500;
const START_POLL_MAX_MS = 5000;

export async function occupy(ctx: OccupyContext, job: OccupyJob): Promise<OccupyOutcome> {
  const { settings, platform, repo, lifecycle } = ctx;
  const name = deploymentName(job.botId, settings.name);
  const log = ctx.log.child({ botId: job.botId, platform: settings.name });
  const released = <T extends OccupyOutcome>(outcome: T) => release(ctx, job.botId, log, outcome);
  if (job.parked) return wakeParked(ctx, job, name, log);
  // A fresh job claims the bot first (QUEUED → DEPLOYING, atomic), which also reads it: no read of its own
  // before the deploy. A job past its platform's queue timeout only reads, to hand a queued bot back.
  const timedOut = Date.now() - job.queuedAtMs > settings.queueTimeoutMs;
  const claim = timedOut ? null : await lifecycle.claim(job.botId, settings.name);
  const bot = timedOut ? await repo.findById(job.botId) : (claim?.bot ?? null);
  if (!bot || (bot.status !== 'QUEUED' && bot.platform !== settings.name && !isTerminal(bot.status))) {
    // Gone, or moved on to another platform: if an earlier run of this job deployed, make sure it is gone.
    await stopIfAny(ctx, name, log);
    return 'not-ours';
  }
  if (isTerminal(bot.status)) {
    await stopIfAny(ctx, name, log);
    // (ended on another platform: that platform's job releases it)
    return bot.platform === settings.name || bot.platform === null ? released('ended-before-deploy') : 'ended-before-deploy';
  }

  let deployment: Deployment | null = null;
  if (claim?.claimed) {
    metrics.queueWaitSeconds.observe({ platform: settings.name }, secondsSince(bot.queuedAt ?? bot.createdAt));
  } else if (bot.status === 'QUEUED') {
    await ctx.placement.handBack(job.botId, settings.name, 'timed-out', `waited over ${settings.queueTimeoutMs} ms`);
    return 'handed-back';
  } else if (LIVE_STATUSES.includes(bot.status)) {
    // A re-run after this job stalled or failed: take over what the earlier run started. One still starting
    // that the earlier run never saw its deploy call return for (it died inside it) is deployed again:
    // deploy is idempotent per name, so that finishes the same start (follows the same Coolify deployment,
    // resumes a half-created Job) rather than waiting it out until the start timeout.
    deployment = await platform.adopt(name);
    if (deployment?.state === 'starting' && !bot.platformIdentifier) deployment = null;
    if (!deployment && bot.platformIdentifier) {
      const { state, detail } = await platform.status(bot.platformIdentifier);
      if (state === 'gone') {
        await lifecycle.end(job.botId, 'FATAL', 'CONTAINER_LOST', `container ${bot.platformIdentifier} is gone${detail ? `: ${detail}` : ''}`);
        return released('released');
      }
      deployment = { identifier: bot.platformIdentifier, state };
    }
    if (deployment) {
      log.info('adopted running container', { identifier: deployment.identifier, state: deployment.state });
      await lifecycle.event(job.botId, 'attempt.adopted', {
        data: { platform: settings.name, identifier: deployment.identifier, state: deployment.state },
      });
      if (!bot.platformIdentifier && deployment.state !== 'elsewhere') {
        await repo.update(job.botId, { platformIdentifier: deployment.identifier });
      }
    }
  }

  if (!deployment) {
    const result = await deployOnce(ctx, job, name, bot, log);
    if (result === 'handed-back') return 'handed-back';
    deployment = result;
  }

  // Returned, not awaited: this function's frame, with the bot document, is not kept for the whole call.
  return hold(ctx, job, deployment, bot.deployedAt?.getTime() ?? Date.now(), log);
}

/**
 * Nothing of the bot occupies this platform any more: it leaves the live index, recovery's list of bots
 * that may still hold capacity (a bot that ended is kept there until its container is confirmed gone, so
 * a Redis wiped meanwhile cannot free capacity early).
 */
async function release<T extends OccupyOutcome>(ctx: OccupyContext, botId: string, log: Logger, outcome: T): Promise<T> {
  await ctx.repo.unmarkLive(botId).catch((error) => log.warn('could not unmark a released bot', { error: String(error) }));
  return outcome;
}

/** Waits for a deployed bot to start; then parks the job, or waits for the end, stops the container and releases. */
async function hold(ctx: OccupyContext, job: OccupyJob, deployment: Deployment, deployedAtMs: number, log: Logger): Promise<OccupyOutcome> {
  const { platform } = ctx;
  let outcome: 'ended' | 'aborted' | 'started' = 'started';
  if (deployment.state === 'starting') {
    const started = await awaitStart(ctx, job, deployment.identifier, deployedAtMs, log);
    if (started === 'handed-back') return 'handed-back';
    outcome = started;
  }
  if (outcome === 'started' && !platform.stopsOnlyWhereDeployed) return 'parked';
  if (outcome === 'started') outcome = (await ctx.endSignals.waitForEnd(job.botId, job.signal)) === 'aborted' ? 'aborted' : 'ended';
  if (outcome === 'aborted') return 'shutting-down';
  if (deployment.state === 'elsewhere') {
    // Held from another host: only that host may stop it, and its reconciliation does once the bot ended.
    log.info('bot ended; its container is stopped by its own host', { identifier: deployment.identifier });
    return release(ctx, job.botId, log, 'released');
  }
  await stopAndRecord(ctx, job.botId, deployment.identifier, log);
  return release(ctx, job.botId, log, 'released');
}

/**
 * A parked job woken: by the bot's end, by reconciliation, or by its own recheck. A bot still running on
 * this platform is parked again; otherwise its container is stopped and the capacity released.
 */
async function wakeParked(ctx: OccupyContext, job: OccupyJob, name: string, log: Logger): Promise<OccupyOutcome> {
  const bot = await ctx.repo.findById(job.botId);
  const onThisPlatform = bot?.platform === ctx.settings.name;
  if (bot && onThisPlatform && LIVE_STATUSES.includes(bot.status)) return 'parked';
  if (bot && onThisPlatform && bot.platformIdentifier) await stopAndRecord(ctx, job.botId, bot.platformIdentifier, log);
  else await stopIfAny(ctx, name, log);
  return release(ctx, job.botId, log, 'released');
}

async function stopAndRecord(ctx: OccupyContext, botId: string, identifier: string, log: Logger): Promise<void> {
  await stopContainer(ctx, identifier);
  // How it ended (exit code, the platform's stop reason), for operators reading the bot's events.
  const { detail } = await ctx.platform.status(identifier).catch(() => ({ detail: undefined }));
  await ctx.lifecycle.event(botId, 'container.stopped', { data: { platform: ctx.settings.name, identifier, detail } });
  log.info('container stopped, capacity released', { identifier });
}

const stopContainer = (ctx: OccupyContext, identifier: string) =>
  withRetries(() => ctx.platform.stop(identifier), { attempts: STOP_RETRIES, isRetryable: () => true });

/**
 * Starting is bounded (PRODUCT.md section 8): a container the platform accepted but still reports
 * `starting` is polled, with growing jittered pauses that also listen for the bot's end, until it runs or
 * the platform's start timeout (counted from the deploy) passes. Then it is stopped and the bot handed back
 * to the next platform with that reason; one that stopped before it ever ran is a failed attempt. Only this
 * job waits: no HTTP request, and the job's BullMQ lock is renewed as for any held bot.
 */
async function awaitStart(
  ctx: OccupyContext,
  job: OccupyJob,
  identifier: string,
  deployedAtMs: number,
  log: Logger,
): Promise<'started' | 'ended' | 'aborted' | 'handed-back'> {
  const { settings, platform } = ctx;
  const deadline = deployedAtMs + settings.startTimeoutMs;
  let pauseMs = START_POLL_FIRST_MS;
  let detail: string | undefined;
  for (;;) {
    const status = await platform.status(identifier).catch((error: unknown) => {
      log.warn('status of a starting container failed; asking again', { identifier, error: String(error) });
      return null;
    });
    if (status && status.state !== 'starting') {
      if (status.state !== 'gone') return 'started';
      await ctx.placement.handBack(job.botId, settings.name, 'failed', `container ${identifier} stopped before it ran${status.detail ? `: ${status.detail}` : ''}`);
      return 'handed-back';
    }
    detail = status?.detail ?? detail;
    if (Date.now() >= deadline) break;
    const pause = Math.min(deadline - Date.now(), pauseMs / 2 + Math.random() * pauseMs);
    pauseMs = Math.min(pauseMs * 2, START_POLL_MAX_MS);
    const waited = await ctx.endSignals.waitForEnd(job.botId, job.signal, pause);
    if (waited === 'ended') return 'ended';
    if (job.signal.aborted) return 'aborted';
  }
  // A bot that already reports progress runs, whatever the platform still says.
  const bot = await ctx.repo.findById(job.botId);
  if (bot?.status !== 'DEPLOYING') return bot && !isTerminal(bot.status) ? 'started' : 'ended';
  const reason = `still starting after ${settings.startTimeoutMs} ms${detail ? ` (${detail})` : ''}`;
  log.warn('container did not start in time; stopping it and moving on', { identifier, reason });
  await stopContainer(ctx, identifier);
  await ctx.lifecycle.event(job.botId, 'container.stopped', { data: { platform: settings.name, identifier, detail: reason } });
  await ctx.placement.handBack(job.botId, settings.name, 'timed-out', reason);
  return 'handed-back';
}

async function deployOnce(
  ctx: OccupyContext,
  job: OccupyJob,
  name: string,
  bot: BotDoc,
  log: Logger,
): Promise<Deployment | 'handed-back'> {
  const { settings, platform, repo } = ctx;
  const release = await ctx.slots.acquire(name, job.signal);
  let deployment: Deployment;
  /** Set when the deploy call failed but its bot already reports from the container, which is kept. */
  let deployError: string | undefined;
  const deployedAt = new Date();
  try {
    const spec = {
      botId: job.botId,
      name,
      attempt: bot.attempts?.length ?? 0,
      meetingPlatform: bot.meeting.platform,
      maxDurationMs: bot.maxDurationMs ?? null,
      env: ctx.botEnv(bot),
    };
    deployment = await withRetries(
      () => {
        metrics.deployAttempts.inc({ platform: settings.name });
        return platform.deploy(spec);
      },
      { attempts: DEPLOY_RETRIES, isRetryable: (error) => error instanceof PlatformError && error.transient },
    );
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    // Full is not failed: the bot moves on at once and may come back here when there is room.
    const full = error instanceof PlatformError && error.full;
    // A deploy may fail after the platform accepted it (its start watch lost the API). A bot that already
    // reports from that container runs: it is kept, as the start watch does, rather than killed mid-join.
    const kept = full ? null : await keptIfReporting(ctx, job.botId, name);
    if (!kept) {
      log.warn(full ? 'platform full, moving on' : 'deploy failed, moving on', { reason });
      // Otherwise whatever it left running goes before the bot moves on, or the bot would run twice. A stop
      // that fails too fails the job, and its retry adopts what runs.
      if (!full) await stopIfAny(ctx, name, log);
      await ctx.placement.handBack(job.botId, settings.name, full ? 'full' : 'failed', reason);
      return 'handed-back';
    }
    log.warn('deploy failed, but its bot already reports from the container; keeping it', { identifier: kept.identifier, reason });
    deployment = kept;
    deployError = reason;
  } finally {
    await release();
  }
  bot.deployedAt = deployedAt;
  metrics.createToDeploySeconds.observe({ platform: settings.name }, secondsSince(bot.createdAt, deployedAt.getTime()));
  const data = { platform: settings.name, identifier: deployment.identifier, state: deployment.state };
  const event = deployError === undefined ? { type: 'attempt.deployed', data } : { type: 'attempt.adopted', reason: deployError, data };
  await repo.update(job.botId, { platformIdentifier: deployment.identifier, deployedAt }, { ...event, at: new Date() });
  log.info('deployed', { identifier: deployment.identifier });
  return deployment;
}

/**
 * The container a failed deploy call left, when its bot already reports from it (its status moved past
 * DEPLOYING on this platform): such a bot runs, whatever the call said. A bot that first reports just after
 * this read loses its container to the stop that follows; the heartbeat sweep then ends it.
 */
async function keptIfReporting(ctx: OccupyContext, botId: string, name: string): Promise<Deployment | null> {
  const bot = await ctx.repo.findById(botId);
  if (bot?.platform !== ctx.settings.name || bot.status === 'DEPLOYING' || !LIVE_STATUSES.includes(bot.status)) return null;
  const leftover = await ctx.platform.adopt(name);
  return leftover && leftover.state !== 'elsewhere' ? leftover : null;
}

async function stopIfAny(ctx: OccupyContext, name: string, log: Logger): Promise<void> {
  const leftover = await ctx.platform.adopt(name);
  if (!leftover || leftover.state === 'elsewhere') return;
  log.warn('stopping a container left by an earlier run', { identifier: leftover.identifier });
  await withRetries(() => ctx.platform.stop(leftover.identifier), { attempts: STOP_RETRIES, isRetryable: () => true });
}
