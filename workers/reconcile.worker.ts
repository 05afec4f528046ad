import { Worker } from 'bullmq';
import { PlatformSettings } from '../src/config';
import { reconcilePlatform } from '../src/health/sweeps';
import { Platform } from '../src/platforms/platform';
import { botIdOfOccupyJob, JobPayloads, reconcileQueueName, reconcileSchedulerId } from '../queues/queue-names';
import { timedSweep } from '../src/metrics';
import { WorkerDeps } from './worker-deps';

/** Reconciliation of one platform, run where its adapter is, once per SWEEP_INTERVAL_MS across processes. */
export async function startReconcileWorker(
  deps: WorkerDeps,
  settings: PlatformSettings,
  platform: Platform,
  intervalMs: number,
): Promise<Worker> {
  const queue = deps.queues.reconcile.get(settings.name)!;
  await deps.keepScheduled(() =>
    queue.upsertJobScheduler(reconcileSchedulerId(settings.name), { every: intervalMs }, {
      name: 'reconcile',
      data: { platform: settings.name },
    }),
  );
  const occupyQueue = deps.queues.platforms.get(settings.name)!;
  return deps.makeWorker<JobPayloads['reconcile']>(
    reconcileQueueName(settings.name),
    async () => {
      const result = await timedSweep(reconcileSchedulerId(settings.name), () => reconcilePlatform({
        repo: deps.occupyContext.repo,
        lifecycle: deps.lifecycle,
        platform,
        settleMs: intervalMs,
        heldBotIds: async () => (await occupyQueue.getRanges(['active'])).map(botIdOfOccupyJob), // ids, not job bodies
      }));
      await deps.countRun(reconcileSchedulerId(settings.name));
      if (result.acted || result.stopped) deps.log.info('reconciliation acted', { platform: settings.name, ...result });
      return result;
    },
    { concurrency: 1 },
  );
}
