import { PlatformSettings } from '../config';
import { isTerminal, LIVE_STATUSES, MeetingPlatform } from '../domain/bot.lifecycle';
import { Logger } from '../logger';
import { deploymentName, Deployment, Platform, PlatformError } from '../platforms/platform';
import { withRetries } from '../retry';
import { Lifecycle } from '../services/lifecycle.service';
import { BotRepository } from '../store/bot.repository';
import { DeploySlots } from './deploy-slots';
import { EndSignals } from './end-signals';
import { Placement } from './placement.service';

/**
 * One bot's stay on one platform, run as a BullMQ job that stays active for as long as the bot occupies the
 * platform: deploy (or adopt after a crash), hold until the bot ends, stop, and only then complete, which
 * frees the capacity. If the worker dies, BullMQ re-runs the stalled job first and this code adopts the
 * running container instead of deploying a second one (PRODUCT.md I1, I2).
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
  botEnv(botId: string): Record<string, string>;
  log: Logger;
}

export interface OccupyJob {
  botId: string;
  /** When the job was added (the start of its wait for this platform). */
  queuedAtMs: number;
  /** Aborted when this process shuts down: the job is handed back to BullMQ, the container keeps running. */
  signal: AbortSignal;
}

export type OccupyOutcome = 'released' | 'ended-before-deploy' | 'handed-back' | 'not-ours' | 'shutting-down';

const DEPLOY_RETRIES = 3;
const STOP_RETRIES = 5;

export async function occupy(ctx: OccupyContext, job: OccupyJob): Promise<OccupyOutcome> {
  const { settings, platform, repo, lifecycle } = ctx;
  const name = deploymentName(job.botId, settings.name);
  const log = ctx.log.child({ botId: job.botId, platform: settings.name });
  const bot = await repo.findById(job.botId);
  if (!bot || (bot.status !== 'QUEUED' && bot.platform !== settings.name && !isTerminal(bot.status))) {
    // Gone, or moved on to another platform: if an earlier run of this job deployed, make sure it is gone.
    await stopIfAny(ctx, name, log);
    return 'not-ours';
  }
  if (isTerminal(bot.status)) {
    await stopIfAny(ctx, name, log);
    return 'ended-before-deploy';
  }

  let deployment: Deployment | null = null;
  if (bot.status === 'QUEUED') {
    if (Date.now() - job.queuedAtMs > settings.queueTimeoutMs) {
      await ctx.placement.handBack(job.botId, settings.name, 'timed-out', `waited over ${settings.queueTimeoutMs} ms`);
      return 'handed-back';
    }
    // The atomic QUEUED → DEPLOYING claim: a bot cancelled while queued can never get past this line.
    const claimed = await lifecycle.tryTransition(job.botId, 'DEPLOYING', {
      source: 'fleet',
      set: { platform: settings.name, platformIdentifier: null, deployingAt: new Date() },
      data: { platform: settings.name },
    });
    if (!claimed) return 'ended-before-deploy';
  } else if (LIVE_STATUSES.includes(bot.status)) {
    // A re-run after this job stalled or failed: take over what the earlier run started.
    deployment = await platform.adopt(name);
    if (!deployment && bot.platformIdentifier) {
      const { state } = await platform.status(bot.platformIdentifier);
      if (state === 'gone') {
        await lifecycle.end(job.botId, 'FATAL', 'CONTAINER_LOST', `container ${bot.platformIdentifier} is gone`);
        return 'released';
      }
      deployment = { identifier: bot.platformIdentifier, state: state === 'elsewhere' ? 'elsewhere' : 'running' };
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
    const result = await deployOnce(ctx, job, name, bot.meeting.platform, log);
    if (result === 'failed') return 'handed-back';
    deployment = result;
  }

  const outcome = await ctx.endSignals.waitForEnd(job.botId, job.signal);
  if (outcome === 'aborted') return 'shutting-down';
  if (deployment.state === 'elsewhere') {
    // Held from another host: only that host may stop it, and its reconciliation does once the bot ended.
    log.info('bot ended; its container is stopped by its own host', { identifier: deployment.identifier });
    return 'released';
  }
  await withRetries(() => platform.stop(deployment!.identifier), { attempts: STOP_RETRIES, isRetryable: () => true });
  await lifecycle.event(job.botId, 'container.stopped', { data: { platform: settings.name, identifier: deployment.identifier } });
  log.info('container stopped, capacity released', { identifier: deployment.identifier });
  return 'released';
}

async function deployOnce(
  ctx: OccupyContext,
  job: OccupyJob,
  name: string,
  meetingPlatform: MeetingPlatform,
  log: Logger,
): Promise<Deployment | 'failed'> {
  const { settings, platform, lifecycle, repo } = ctx;
  const release = await ctx.slots.acquire(name, job.signal);
  let deployment: Deployment;
  try {
    const spec = { botId: job.botId, name, meetingPlatform, env: ctx.botEnv(job.botId) };
    deployment = await withRetries(
      () => platform.deploy(spec),
      { attempts: DEPLOY_RETRIES, isRetryable: (error) => error instanceof PlatformError && error.transient },
    );
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    // Full is not failed (PRODUCT.md section 8): the bot moves on at once and, like after a wait that timed
    // out, may be offered this platform again once every other one was tried.
    const outcome = error instanceof PlatformError && error.full ? 'timed-out' : 'failed';
    log.warn('deploy failed, moving on', { reason, outcome });
    await ctx.placement.handBack(job.botId, settings.name, outcome, reason);
    return 'failed';
  } finally {
    await release();
  }
  await repo.update(job.botId, { platformIdentifier: deployment.identifier, deployedAt: new Date() });
  await lifecycle.event(job.botId, 'attempt.deployed', {
    data: { platform: settings.name, identifier: deployment.identifier, state: deployment.state },
  });
  log.info('deployed', { identifier: deployment.identifier });
  return deployment;
}

async function stopIfAny(ctx: OccupyContext, name: string, log: Logger): Promise<void> {
  const leftover = await ctx.platform.adopt(name);
  if (!leftover || leftover.state === 'elsewhere') return;
  log.warn('stopping a container left by an earlier run', { identifier: leftover.identifier });
  await withRetries(() => ctx.platform.stop(leftover.identifier), { attempts: STOP_RETRIES, isRetryable: () => true });
}
