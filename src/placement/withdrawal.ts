import { PlatformSettings } from '../config';
import { occupyJobId } from '../../queues/queue-names';
import { Queues } from '../../queues/queues';
import { GlobalQueue } from './global-queue';

/**
 * Takes an ended bot out of every line it may still wait in (the global queue, the schedule, any platform
 * queue whose occupy job has not started) and wakes its parked occupy job, which then stops the container
 * (workers/occupy.ts). An active job stops its own container: it hears the end signal, or looks once more
 * after parking.
 */
export type Withdrawal = (botId: string) => Promise<void>;

export function createWithdrawal(queues: Queues, globalQueue: GlobalQueue, platforms: readonly PlatformSettings[]): Withdrawal {
  const fromPlatform = async (platform: string, botId: string) => {
    const job = await queues.platforms.get(platform)!.getJob(occupyJobId(botId, platform));
    if (!job) return;
    const state = await job.getState();
    // Either may find the job moved on meanwhile (started, or woken by someone else): nothing left to do.
    if (state === 'waiting' || state === 'prioritized') await job.remove().catch(() => undefined);
    else if (state === 'delayed') await job.promote().catch(() => undefined);
  };
  return async (botId) => {
    await Promise.all([
      globalQueue.forget(botId),
      queues.schedule.getJob(botId).then((job) => job?.remove().catch(() => undefined)),
      ...platforms.map((settings) => fromPlatform(settings.name, botId)),
    ]);
  };
}
