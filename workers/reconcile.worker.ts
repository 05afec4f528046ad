import { Worker } from 'bullmq';
import { PlatformSettings } from '../src/config';
import { LIVE_STATUSES } from '../src/domain/bot.lifecycle';
import { reconcilePlatform } from './sweeps';
import { Platform } from '../src/platforms/platform';
import { timedSweep } from '../src/metrics';
import {
  JobPayloads,
  occupyJobId,
  reconcileQueueName,
  reconcileSchedulerId,
  upkeepSchedulerId,
} from '../queues/queue-names';
import { WorkerDeps } from './worker-deps';
import { occupyingBotIds, wakeableBotIds } from '../src/placement/occupancy';

/**
 * Reconciliation of one platform, run where its adapter is, once per SWEEP_INTERVAL_MS across processes; and
 * on the same queue the platform's upkeep (Coolify: slot recovery) once per its own interval. It also wakes
 * the parked occupy jobs of bots that ended without waking them (the process that ended one died first).
 */
export async function startReconcileWorker(
  deps: WorkerDeps,
  settings: PlatformSettings,
  platform: Platform,
  intervalMs: number,
): Promise<Worker> {
  const queue = deps.queues.reconcile.get(settings.name)!;
  await deps.keepScheduled(() =>
    queue.upsertJobScheduler(
      reconcileSchedulerId(settings.name),
      { every: intervalMs },
      {
        name: 'reconcile',
        data: { platform: settings.name },
      },
    ),
  );
  const upkeep = platform.upkeep;
  const upkeepId = upkeep ? upkeepSchedulerId(settings.name, upkeep.name) : null;
  if (upkeep && upkeepId) {
    await deps.keepScheduled(() =>
      queue.upsertJobScheduler(
        upkeepId,
        { every: upkeep.intervalMs },
        { name: upkeepId, data: { platform: settings.name } },
      ),
    );
  }
  const { repo } = deps.occupyContext;
  const holdsBot = async (botId: string) => {
    const bot = await repo.findById(botId);
    return !!bot && LIVE_STATUSES.includes(bot.status) && bot.platform === settings.name;
  };
  const occupyQueue = deps.queues.platforms.get(settings.name)!;
  const wake = async (botId: string) => {
    // already woken meanwhile: nothing to do
    await (await occupyQueue.getJob(occupyJobId(botId, settings.name)))?.promote().catch(() => undefined);
  };
  const wakeEndedParked = async () => {
    const parked = await wakeableBotIds(occupyQueue);
    const ended = await deps.occupyContext.endSignals.endedAmong(parked);
    await Promise.all(ended.map(wake));
    return ended.length;
  };
  return deps.makeWorker<JobPayloads['reconcile'] | JobPayloads['upkeep']>(
    reconcileQueueName(settings.name),
    async (job) => {
      if (upkeep && job.name === upkeepId) {
        const result = await timedSweep(upkeepId, () => upkeep.run({ holdsBot }));
        await deps.countRun(upkeepId);
        if (Object.values(result).some(Boolean))
          deps.log.info('platform upkeep acted', { platform: settings.name, upkeep: upkeep.name, ...result });
        return result;
      }
      const result = await timedSweep(reconcileSchedulerId(settings.name), async () => ({
        ...(await reconcilePlatform({
          repo,
          lifecycle: deps.lifecycle,
          platform,
          settleMs: intervalMs,
          // Every bot holding the capacity: its job alone stops its container. Waiting jobs count too: a
          // parked job woken by its bot's end waits for a worker, and a second stop of the same container
          // meanwhile could reach the slot's next holder.
          heldBotIds: () => occupyingBotIds(occupyQueue),
          parkedBotIds: () => wakeableBotIds(occupyQueue),
          wake,
        })),
        woken: await wakeEndedParked(),
      }));
      await deps.countRun(reconcileSchedulerId(settings.name));
      if (result.acted || result.stopped || result.lostStarts || result.woken)
        deps.log.info('reconciliation acted', { platform: settings.name, ...result });
      return result;
    },
    { concurrency: 1 },
  );
}
