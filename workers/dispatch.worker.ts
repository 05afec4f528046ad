import { Worker } from 'bullmq';
import { DISPATCH_QUEUE, DISPATCH_TICK_SCHEDULER_ID, DISPATCH_WAKE_ID, JobPayloads } from '../queues/queue-names';
import { WorkerDeps } from './worker-deps';

/** The dispatcher: one run at a time across all processes (the queue's global concurrency is 1). */
export async function startDispatchWorker(deps: WorkerDeps): Promise<Worker> {
  // A tick re-runs the dispatcher even if every wake-up was missed, and drives the queue timeouts.
  await deps.keepScheduled(() =>
    deps.queues.dispatch.upsertJobScheduler(
      DISPATCH_TICK_SCHEDULER_ID,
      { every: deps.dispatchTickMs },
      { name: 'dispatch', data: { reason: 'tick' } },
    ),
  );
  return deps.makeWorker<JobPayloads['dispatch']>(
    DISPATCH_QUEUE,
    async () => {
      // From here on a new wake-up waits behind this run instead of being folded into it.
      await deps.queues.dispatch.removeDeduplicationKey(DISPATCH_WAKE_ID);
      return deps.placement.dispatch();
    },
    { concurrency: 1 },
  );
}
