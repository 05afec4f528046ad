import { Worker } from 'bullmq';
import { JobPayloads, SCHEDULE_QUEUE } from '../queues/queue-names';
import { WorkerDeps } from './worker-deps';

/** A SCHEDULED bot's join time is near: it becomes QUEUED and enters the global queue. */
export function startScheduleWorker(deps: WorkerDeps): Worker {
  return deps.makeWorker<JobPayloads['schedule']>(
    SCHEDULE_QUEUE,
    async (job) => {
      const queued = await deps.lifecycle.tryTransition(job.data.botId, 'QUEUED', {
        source: 'fleet',
        set: { queuedAt: new Date() },
      });
      if (queued) await deps.placement.enqueue(queued);
      return queued ? 'queued' : 'not-scheduled-anymore';
    },
    { concurrency: 20 },
  );
}
