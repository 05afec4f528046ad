import { PlatformSettings } from '../config';
import { occupyJobId } from '../../queues/queue-names';
import { Queues } from '../../queues/queues';

/**
 * Takes an ended bot out of every job queue it may still wait in (the schedule, any platform queue whose
 * occupy job has not started) and wakes its parked occupy job, which then stops the container
 * (workers/occupy.ts). An active job stops its own container: it hears the end signal, or looks once more
 * after parking. The global queue forgets the bot in the step that ends it (Lifecycle).
 *
 * A bot a platform claimed waits in that platform's queue alone: it left the schedule before it was
 * queued, and a requeue clears its platform. A job of an earlier attempt elsewhere, had one survived, finds
 * the bot not its own when it runs and stops whatever it left.
 */
export type Withdrawal = (botId: string, platform: string | null) => Promise<void>;

export function createWithdrawal(queues: Queues, platforms: readonly PlatformSettings[]): Withdrawal {
  const fromPlatform = async (platform: string, botId: string) => {
    const queue = queues.platforms.get(platform);
    const job = await queue?.getJob(occupyJobId(botId, platform));
    if (!job) return;
    const state = await job.getState();
    // Either may find the job moved on meanwhile (started, or woken by someone else): nothing left to do.
    if (state === 'waiting' || state === 'prioritized') await job.remove().catch(() => undefined);
    else if (state === 'delayed') await job.promote().catch(() => undefined);
  };
  return async (botId, platform) => {
    if (platform) return fromPlatform(platform, botId);
    await Promise.all([
      queues.schedule.getJob(botId).then((job) => job?.remove().catch(() => undefined)),
      ...platforms.map((settings) => fromPlatform(settings.name, botId)),
    ]);
  };
}
