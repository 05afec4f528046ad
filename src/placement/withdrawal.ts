import { PlatformSettings } from '../config';
import { occupyJobId } from '../../queues/queue-names';
import { Queues } from '../../queues/queues';
import { GlobalQueue } from './global-queue';

/**
 * Takes an ended bot out of every line it may still wait in: the global queue, the schedule and any platform
 * queue whose occupy job has not started. A started job stops its own container (it hears the end signal).
 */
export type Withdrawal = (botId: string) => Promise<void>;

export function createWithdrawal(queues: Queues, globalQueue: GlobalQueue, platforms: readonly PlatformSettings[]): Withdrawal {
  return async (botId) => {
    await globalQueue.forget(botId);
    await (await queues.schedule.getJob(botId))?.remove().catch(() => undefined);
    for (const settings of platforms) {
      const job = await queues.platforms.get(settings.name)!.getJob(occupyJobId(botId, settings.name));
      if (job && (await job.isWaiting())) await job.remove().catch(() => undefined);
    }
  };
}
