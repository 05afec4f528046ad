import { PlatformSettings } from '../config';
import { withdrawalOf } from '../domain/occupancy';
import { occupyJobId } from '../../queues/queue-names';
import { Queues } from '../../queues/queues';

/**
 * Takes an ended bot out of every job queue it may still wait in (the schedule, a platform queue whose
 * occupy job waits to deploy it) and wakes its parked occupy job, which then stops the container
 * (workers/occupy.ts), as the capacity rule says (src/domain/occupancy.ts `withdrawalOf`). An active job
 * stops its own container: it hears the end signal, or looks once more after parking. The global queue
 * forgets the bot in the step that ends it (Lifecycle).
 *
 * A bot a platform claimed waits in that platform's queue alone: it left the schedule before it was
 * queued, and a requeue clears its platform. Its job is never removed, whatever its state: a job waiting
 * after an earlier run (woken from parking, handed back at a shutdown, re-held by recovery) is what stops
 * the container, and removing it would free the capacity while the container runs. A job of an earlier
 * attempt elsewhere, had one survived, finds the bot not its own when it runs and stops whatever it left.
 */
export type Withdrawal = (botId: string, platform: string | null) => Promise<void>;

export function createWithdrawal(queues: Queues, platforms: readonly PlatformSettings[]): Withdrawal {
  const fromPlatform = async (platform: string, botId: string, claimed: boolean) => {
    const queue = queues.platforms.get(platform);
    const job = await queue?.getJob(occupyJobId(botId, platform));
    if (!job) return;
    const action = withdrawalOf(await job.getState(), claimed);
    // Either may find the job moved on meanwhile (started, or woken by someone else): nothing left to do.
    if (action === 'remove') await job.remove().catch(() => undefined);
    else if (action === 'wake') await job.promote().catch(() => undefined);
  };
  return async (botId, platform) => {
    if (platform) return fromPlatform(platform, botId, true);
    await Promise.all([
      queues.schedule.getJob(botId).then((job) => job?.remove().catch(() => undefined)),
      ...platforms.map((settings) => fromPlatform(settings.name, botId, false)),
    ]);
  };
}
