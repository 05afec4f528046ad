import { PlatformSettings } from '../src/config';
import { isTerminal, LIVE_STATUSES } from '../src/domain/bot.lifecycle';
import { EndedContainerPlace, whenEndedBotRuns } from '../src/domain/occupancy';
import { decideFailedStart, StartFailure } from '../src/domain/start-retry';
import { Logger } from '../src/logger';
import { deploymentName, DeployContext, Deployment, Platform, PlatformError } from '../src/platforms/platform';
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
 * the running container instead of deploying a second one (docs/invariants.md, capacity and once).
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
  /** Builds the container env for a bot (docs/bot-protocol.md), including its own token. */
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

/**
 * `awaiting-host`: the bot ended, but its container runs on another host, which alone may stop it; the job
 * waits parked, holding the capacity, until a worker of that host runs it or that host counts as gone.
 */
export type OccupyOutcome =
  'released' | 'ended-before-deploy' | 'handed-back' | 'not-ours' | 'shutting-down' | 'parked' | 'awaiting-host';

const DEPLOY_RETRIES = 3;
const STOP_RETRIES = 5;
/** Before a retry of a failed start: half of this, doubling with each try up to the last, plus up to as much jitter. */
const START_RETRY_PAUSE_FIRST_MS = 1000;
const START_RETRY_PAUSE_MAX_MS = 10_000;
const retryPauseMs = (failedTry: number) => {
  const pause = Math.min(START_RETRY_PAUSE_MAX_MS, START_RETRY_PAUSE_FIRST_MS * 2 ** failedTry);
  return pause / 2 + (Math.random() * pause) / 2;
};
/** Polling a starting container: the first pause, doubling up to the last, each with jitter. */
const START_POLL_FIRST_MS = 500;
const START_POLL_MAX_MS = 5000;

export async function occupy(ctx: OccupyContext, job: OccupyJob): Promise<OccupyOutcome> {
  const { settings, platform, repo, lifecycle } = ctx;
  const log = ctx.log.child({ botId: job.botId, platform: settings.name });
  const released = <T extends OccupyOutcome>(outcome: T) => release(ctx, job.botId, log, outcome);
  if (job.parked) return wakeParked(ctx, job, log);
  // A fresh job claims the bot first (QUEUED → DEPLOYING, atomic), which also reads it: no read of its own
  // before the deploy. A job past its platform's queue timeout only reads, to hand a queued bot back.
  const timedOut = Date.now() - job.queuedAtMs > settings.queueTimeoutMs;
  const claim = timedOut ? null : await lifecycle.claim(job.botId, settings.name);
  const bot = timedOut ? await repo.findById(job.botId) : (claim?.bot ?? null);
  if (!bot || (bot.status !== 'QUEUED' && bot.platform !== settings.name && !isTerminal(bot.status))) {
    // Gone, or moved on to another platform: if an earlier run of this job deployed, make sure it is gone.
    if (await runsOnAnotherHost(ctx, job.botId, log)) return 'awaiting-host';
    await stopLeftovers(ctx, job.botId, null, log);
    return 'not-ours';
  }
  if (isTerminal(bot.status)) {
    if (await runsOnAnotherHost(ctx, job.botId, log)) return 'awaiting-host';
    await stopLeftovers(ctx, job.botId, bot.platform === settings.name ? bot : null, log);
    // (ended on another platform: that platform's job releases it)
    return bot.platform === settings.name || bot.platform === null
      ? released('ended-before-deploy')
      : 'ended-before-deploy';
  }

  let first: Deployment | FailedStart | null = null;
  if (claim?.claimed) {
    metrics.queueWaitSeconds.observe({ platform: settings.name }, secondsSince(bot.queuedAt ?? bot.createdAt));
  } else if (bot.status === 'QUEUED') {
    await ctx.placement.handBack(job.botId, settings.name, 'timed-out', `waited over ${settings.queueTimeoutMs} ms`);
    return 'handed-back';
  } else if (LIVE_STATUSES.includes(bot.status)) {
    // A re-run after this job stalled or failed: take over what the earlier run started, under the name of
    // the bot's current start try. One still starting that the earlier run never saw its deploy call return
    // for (it died inside it) is deployed again: deploy is idempotent per name, so that finishes the same
    // start (follows the same Coolify deployment, resumes a half-created Job) rather than waiting it out
    // until the start timeout.
    const name = deploymentName(job.botId, settings.name, bot.startTry ?? 0);
    let deployment = await platform.adopt(name);
    if (deployment?.state === 'starting' && !bot.platformIdentifier) deployment = null;
    if (!deployment && bot.platformIdentifier) {
      const { state, detail } = await platform.status(bot.platformIdentifier);
      if (state === 'gone' && bot.status === 'DEPLOYING') {
        // Its bot never reported: a start that failed while no one watched it, judged as the watch would.
        first = {
          failure: 'failed',
          reason: stoppedBeforeRunning(bot.platformIdentifier, detail),
          identifier: bot.platformIdentifier,
        };
      } else if (state === 'gone') {
        await lifecycle.end(
          job.botId,
          'FATAL',
          'CONTAINER_LOST',
          `container ${bot.platformIdentifier} is gone${detail ? `: ${detail}` : ''}`,
        );
        return released('released');
      } else {
        deployment = { identifier: bot.platformIdentifier, state };
      }
    }
    if (deployment) {
      log.info('adopted running container', { identifier: deployment.identifier, state: deployment.state });
      await lifecycle.event(job.botId, 'attempt.adopted', {
        data: { platform: settings.name, identifier: deployment.identifier, state: deployment.state },
      });
      if (!bot.platformIdentifier && deployment.state !== 'elsewhere') {
        await repo.update(job.botId, { platformIdentifier: deployment.identifier });
      }
      first = deployment;
    } else if (!first && (bot.startTry ?? 0) > 0) {
      // The earlier run recorded this try and may have died before it stopped what the failed one left.
      await stopIfAny(ctx, deploymentName(job.botId, settings.name, (bot.startTry ?? 0) - 1), log);
    }
  }

  return startAndHold(ctx, job, bot, first, log);
}

/** Starts the bot (see start()), then holds it; what is left when it ends or moves on is released. */
async function startAndHold(
  ctx: OccupyContext,
  job: OccupyJob,
  bot: BotDoc,
  first: Deployment | FailedStart | null,
  log: Logger,
): Promise<OccupyOutcome> {
  const started = await start(ctx, job, bot, first, log);
  if (started === 'handed-back' || started === 'not-ours' || started === 'shutting-down') return started;
  if (started === 'ended-before-deploy') return release(ctx, job.botId, log, started);
  // Returned, not awaited: this function's frame, with the bot document, is not kept for the whole call.
  return hold(ctx, job, started, log);
}

/** A start that did not succeed, with the reason recorded for it. */
interface FailedStart {
  failure: StartFailure;
  reason: string;
  /** The failed try's container, when the platform had accepted one. */
  identifier?: string;
}

interface Started {
  outcome: 'started' | 'ended' | 'aborted';
  deployment: Deployment;
}

const stoppedBeforeRunning = (identifier: string, detail?: string) =>
  `container ${identifier} stopped before it ran${detail ? `: ${detail}` : ''}`;

/**
 * Deploys the bot's current start try (unless `first` already is its deployment or its failure) and waits
 * until it runs. A start that fails is retried under the next try's name, on a new task, slot or Job, as
 * decideFailedStart rules; every failed try is in the bot's events (`attempt.start-failed`, then
 * `attempt.retried` or the hand-back's `attempt.failed`). The job stays active throughout, so the bot keeps
 * holding its one unit of the platform's capacity and no other. The next try is recorded before the failed
 * one's container is stopped, and that container is confirmed gone before the next try is deployed: a re-run
 * after a crash deploys or adopts the try recorded (stopping what the one before may have left), never
 * deploying a failed try again nor one beside another try's container.
 */
async function start(
  ctx: OccupyContext,
  job: OccupyJob,
  bot: BotDoc,
  first: Deployment | FailedStart | null,
  log: Logger,
): Promise<Started | 'handed-back' | 'ended-before-deploy' | 'not-ours' | 'shutting-down'> {
  const { settings } = ctx;
  let startTry = bot.startTry ?? 0;
  let next = first;
  for (;;) {
    const name = deploymentName(job.botId, settings.name, startTry);
    const deployed = next ?? (await deployOnce(ctx, job, name, bot, log));
    next = null;
    let failed: FailedStart;
    if ('failure' in deployed) {
      failed = deployed;
    } else {
      if (deployed.state !== 'starting') return { outcome: 'started', deployment: deployed };
      const started = await awaitStart(ctx, job, deployed.identifier, bot.deployedAt?.getTime() ?? Date.now(), log);
      if (typeof started === 'string') return { outcome: started, deployment: deployed };
      failed = started;
    }
    const decision = decideFailedStart(failed.failure, startTry, settings.startRetries);
    if (failed.failure === 'failed') {
      log.warn('start failed', { try: startTry, reason: failed.reason, next: decision });
      await ctx.lifecycle.event(job.botId, 'attempt.start-failed', {
        reason: failed.reason,
        data: { platform: settings.name, try: startTry, identifier: failed.identifier ?? null },
      });
    }
    if (decision !== 'retry') {
      // Whatever a failed try left goes before the bot moves on, or the bot would run twice. A stop that
      // fails too fails the job, and its retry adopts what runs.
      if (failed.failure === 'failed') await stopFailedTry(ctx, failed, name, log);
      const reason =
        failed.failure === 'failed' && startTry > 0 ? `${failed.reason} (after ${startTry + 1} tries)` : failed.reason;
      await ctx.placement.handBack(job.botId, settings.name, decision, reason);
      return 'handed-back';
    }
    // Recorded before the failed try's leftovers are stopped: from here on a re-run deploys the next try
    // (after making sure this one left nothing), never this one a second time.
    const retried = await recordRetry(ctx, job.botId, startTry + 1);
    await stopFailedTry(ctx, failed, name, log);
    if (retried !== 'retried') return retried;
    startTry++;
    // A pause, growing with each try: what broke one start (a node, the registry) may need a moment.
    const waited = await ctx.endSignals.waitForEnd(job.botId, job.signal, retryPauseMs(startTry - 1));
    if (waited === 'ended') return 'ended-before-deploy';
    if (waited === 'aborted') return 'shutting-down';
  }
}

/**
 * Stops what a failed try left: its container when the platform had accepted one (one that stopped by itself
 * may still be listed, as a failed Job is until its TTL), else whatever runs under its name.
 */
async function stopFailedTry(ctx: OccupyContext, failed: FailedStart, name: string, log: Logger): Promise<void> {
  if (failed.identifier) await stopContainer(ctx, failed.identifier);
  else await stopIfAny(ctx, name, log);
}

/**
 * Records the next start try, and forgets the failed try's container (confirmed gone by then), in one write;
 * unless the bot ended or moved meanwhile, which deploys nothing more.
 */
async function recordRetry(
  ctx: OccupyContext,
  botId: string,
  startTry: number,
): Promise<'retried' | 'ended-before-deploy' | 'not-ours'> {
  const { settings, repo } = ctx;
  const bot = await repo.findById(botId);
  if (!bot || isTerminal(bot.status)) return bot && bot.platform !== settings.name ? 'not-ours' : 'ended-before-deploy';
  if (bot.platform !== settings.name) return 'not-ours';
  if (bot.status !== 'DEPLOYING') {
    // It reported from the container that is gone now: not a start that failed, a bot that lost its container.
    await ctx.lifecycle.end(botId, 'FATAL', 'CONTAINER_LOST', `container of start try ${startTry - 1} is gone`);
    return 'ended-before-deploy';
  }
  await repo.update(
    botId,
    { startTry, platformIdentifier: null },
    {
      type: 'attempt.retried',
      at: new Date(),
      data: { platform: settings.name, try: startTry, name: deploymentName(botId, settings.name, startTry) },
    },
  );
  return 'retried';
}

/**
 * Nothing of the bot occupies this platform any more: it leaves the live index, recovery's list of bots
 * that may still hold capacity (a bot that ended is kept there until its container is confirmed gone, so
 * a Redis wiped meanwhile cannot free capacity early).
 */
async function release<T extends OccupyOutcome>(
  ctx: OccupyContext,
  botId: string,
  log: Logger,
  outcome: T,
): Promise<T> {
  await ctx.repo
    .unmarkLive(botId)
    .catch((error) => log.warn('could not unmark a released bot', { error: String(error) }));
  return outcome;
}

/** Once the bot's container started: parks the job, or waits for the end, stops the container and releases. */
async function hold(
  ctx: OccupyContext,
  job: OccupyJob,
  { outcome, deployment }: Started,
  log: Logger,
): Promise<OccupyOutcome> {
  if (outcome === 'started' && !ctx.platform.stopsOnlyWhereDeployed) return 'parked';
  if (outcome === 'started')
    outcome = (await ctx.endSignals.waitForEnd(job.botId, job.signal)) === 'aborted' ? 'aborted' : 'ended';
  if (outcome === 'aborted') return 'shutting-down';
  if (deployment.state === 'elsewhere') {
    // Held from another host: only that host may stop it, and the capacity stays held until it did.
    if (await runsOnAnotherHost(ctx, job.botId, log)) return 'awaiting-host';
    return release(ctx, job.botId, log, 'released');
  }
  await stopAndRecord(ctx, job.botId, deployment.identifier, log);
  return release(ctx, job.botId, log, 'released');
}

/**
 * A parked job woken: by the bot's end, by reconciliation, or by its own recheck. A bot still running on
 * this platform is parked again; otherwise its container is stopped and the capacity released. A job is
 * parked once the platform says its container runs, which may be before the bot reports: a container gone
 * while its bot is still DEPLOYING is a start that failed, retried or moved on as any other. A bot that moved
 * on meanwhile (placed on another platform, back in the global queue, or ended on another platform) is not
 * this job's to release, as in occupy(): what it left here is stopped, and the bot stays in the live index
 * for what holds it now (that platform's job, or the global queue).
 */
async function wakeParked(ctx: OccupyContext, job: OccupyJob, log: Logger): Promise<OccupyOutcome> {
  const bot = await ctx.repo.findById(job.botId);
  const onThisPlatform = bot?.platform === ctx.settings.name;
  if (bot && onThisPlatform && bot.status === 'DEPLOYING' && bot.platformIdentifier) {
    const { state, detail } = await ctx.platform.status(bot.platformIdentifier);
    if (state !== 'gone') return 'parked';
    const identifier = bot.platformIdentifier;
    return startAndHold(
      ctx,
      job,
      bot,
      { failure: 'failed', reason: stoppedBeforeRunning(identifier, detail), identifier },
      log,
    );
  }
  if (bot && onThisPlatform && LIVE_STATUSES.includes(bot.status)) return 'parked';
  if (await runsOnAnotherHost(ctx, job.botId, log)) return 'awaiting-host';
  if (bot && onThisPlatform && bot.platformIdentifier) await stopAndRecord(ctx, job.botId, bot.platformIdentifier, log);
  else await stopLeftovers(ctx, job.botId, onThisPlatform ? bot : null, log);
  if (bot && !onThisPlatform && (bot.platform || !isTerminal(bot.status)))
    return isTerminal(bot.status) ? 'ended-before-deploy' : 'not-ours';
  return release(ctx, job.botId, log, 'released');
}

/**
 * Whether a container of the ended bot, of any start try, runs on another host that may be alive: only that
 * host may stop it, so the bot keeps its unit of capacity (whenEndedBotRuns). Only platforms whose containers
 * belong to one host (`stopsOnlyWhereDeployed`) have any; a host gone for good answers nothing.
 */
async function runsOnAnotherHost(ctx: OccupyContext, botId: string, log: Logger): Promise<boolean> {
  if (!ctx.platform.stopsOnlyWhereDeployed) return false;
  for (let startTry = 0; startTry <= ctx.settings.startRetries; startTry++) {
    const found = await ctx.platform.adopt(deploymentName(botId, ctx.settings.name, startTry));
    const place: EndedContainerPlace = !found ? 'nowhere' : found.state === 'elsewhere' ? 'another-host' : 'here';
    if (whenEndedBotRuns(place) === 'hold') {
      log.info('bot ended; its container runs on another host, which alone may stop it: capacity held', {
        identifier: found?.identifier,
      });
      return true;
    }
  }
  return false;
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
 * Starting is bounded (docs/platform-contract.md): a container the platform accepted but still reports
 * `starting` is polled, with growing jittered pauses that also listen for the bot's end, until it runs or
 * the platform's start timeout (counted from the deploy) passes. Then it is stopped, a start that timed out;
 * one that stopped before it ever ran is a failed start (see start() for what follows either). Only this
 * job waits: no HTTP request, and the job's BullMQ lock is renewed as for any held bot.
 */
async function awaitStart(
  ctx: OccupyContext,
  job: OccupyJob,
  identifier: string,
  deployedAtMs: number,
  log: Logger,
): Promise<'started' | 'ended' | 'aborted' | FailedStart> {
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
      return { failure: 'failed', reason: stoppedBeforeRunning(identifier, status.detail), identifier };
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
  await ctx.lifecycle.event(job.botId, 'container.stopped', {
    data: { platform: settings.name, identifier, detail: reason },
  });
  return { failure: 'timed-out', reason, identifier };
}

async function deployOnce(
  ctx: OccupyContext,
  job: OccupyJob,
  name: string,
  bot: BotDoc,
  log: Logger,
): Promise<Deployment | FailedStart> {
  const { settings, platform, repo } = ctx;
  const slot = await ctx.slots.acquire(name, job.signal);
  let deployment: Deployment;
  /** Set when the deploy call failed but its bot already reports from the container, which is kept. */
  let deployError: string | undefined;
  let deployedAt = new Date();
  // The start timeout counts from when the deploy call really went out: a wait outside the slot (a Kubernetes
  // bot waiting for another bot's image pull, for up to the start timeout) must not use up this try's.
  const outsideDeploySlot: DeployContext['outsideDeploySlot'] = async (wait) => {
    const result = await slot.outside(wait);
    deployedAt = new Date();
    return result;
  };
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
        return platform.deploy(spec, { outsideDeploySlot });
      },
      { attempts: DEPLOY_RETRIES, isRetryable: (error) => error instanceof PlatformError && error.transient },
    );
  } catch (error) {
    // Shut down while waiting for the slot again (DeploySlot.outside): the job is retried, not failed.
    if (job.signal.aborted) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    // Full is not failed: the bot moves on at once and may come back here when there is room.
    const full = error instanceof PlatformError && error.full;
    // A deploy may fail after the platform accepted it (its start watch lost the API). A bot that already
    // reports from that container runs: it is kept, as the start watch does, rather than killed mid-join.
    const kept = full ? null : await keptIfReporting(ctx, job.botId, name);
    if (!kept) {
      // Otherwise what it left running is stopped by start(), once what follows is recorded.
      log.warn(full ? 'platform full' : 'deploy failed', { reason });
      return { failure: full ? 'full' : 'failed', reason };
    }
    log.warn('deploy failed, but its bot already reports from the container; keeping it', {
      identifier: kept.identifier,
      reason,
    });
    deployment = kept;
    deployError = reason;
  } finally {
    await slot.release();
  }
  bot.deployedAt = deployedAt;
  metrics.createToDeploySeconds.observe({ platform: settings.name }, secondsSince(bot.createdAt, deployedAt.getTime()));
  const data = { platform: settings.name, identifier: deployment.identifier, state: deployment.state };
  const event =
    deployError === undefined
      ? { type: 'attempt.deployed', data }
      : { type: 'attempt.adopted', reason: deployError, data };
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
  if (bot?.platform !== ctx.settings.name || bot.status === 'DEPLOYING' || !LIVE_STATUSES.includes(bot.status))
    return null;
  const leftover = await ctx.platform.adopt(name);
  return leftover && leftover.state !== 'elsewhere' ? leftover : null;
}

/**
 * Stops whatever an earlier run of this job may have left: the container of the bot's current start try
 * when `bot` is the bot on this platform, else (it moved on, or is gone) of any try it may have had here.
 */
async function stopLeftovers(ctx: OccupyContext, botId: string, bot: BotDoc | null, log: Logger): Promise<void> {
  const { name, startRetries } = ctx.settings;
  const tries = bot ? [bot.startTry ?? 0] : Array.from({ length: startRetries + 1 }, (_, startTry) => startTry);
  for (const startTry of tries) await stopIfAny(ctx, deploymentName(botId, name, startTry), log);
}

async function stopIfAny(ctx: OccupyContext, name: string, log: Logger): Promise<void> {
  const leftover = await ctx.platform.adopt(name);
  if (!leftover || leftover.state === 'elsewhere') return;
  log.warn('stopping a container left by an earlier run', { identifier: leftover.identifier });
  await withRetries(() => ctx.platform.stop(leftover.identifier), { attempts: STOP_RETRIES, isRetryable: () => true });
}
