import { Worker } from 'bullmq';
import {
  DISPATCH_QUEUE,
  DISPATCH_TICK_REASON,
  DISPATCH_TICK_SCHEDULER_ID,
  DISPATCH_WAKE_ID,
  JobPayloads,
} from '../queues/queue-names';
import { WorkerDeps } from './worker-deps';

/** A dispatch job's lock (BullMQ renews it while the run goes on). */
export const DISPATCH_LOCK_MS = 5000;

/** The dispatcher: one run at a time across all processes (the queue's global concurrency is 1). */
export async function startDispatchWorker(deps: WorkerDeps): Promise<Worker> {
  // A tick re-runs the dispatcher even if every wake-up was missed, and drives the queue timeouts.
  await deps.keepScheduled(() =>
    deps.queues.dispatch.upsertJobScheduler(
      DISPATCH_TICK_SCHEDULER_ID,
      { every: deps.dispatchTickMs },
      { name: 'dispatch', data: { reason: DISPATCH_TICK_REASON } },
    ),
  );
  return deps.makeWorker<JobPayloads['dispatch']>(
    DISPATCH_QUEUE,
    async (job) => {
      // From here on a new wake-up waits behind this run instead of being folded into it.
      await deps.queues.dispatch.removeDeduplicationKey(DISPATCH_WAKE_ID);
      return deps.placement.dispatch({ expire: job.data.reason === DISPATCH_TICK_REASON });
    },
    {
      concurrency: 1,
      // The queue runs one job at a time, so the job of a process that died blocks every placement until
      // BullMQ finds it stalled: a run takes milliseconds, so its lock is short (and renewed while it runs).
      lockDuration: DISPATCH_LOCK_MS,
      stalledInterval: DISPATCH_LOCK_MS / 2,
    },
  );
}
