import { setMaxListeners } from 'node:events';
import { DelayedError, Job, Worker, WaitingError } from 'bullmq';
import { PlatformSettings } from '../src/config';
import { isTerminal } from '../src/domain/bot.lifecycle';
import { occupy } from './occupy';
import { Platform } from '../src/platforms/platform';
import { JobPayloads, PARKED_RECHECK_MS, platformQueueName } from '../queues/queue-names';
import { WorkerDeps } from './worker-deps';

/**
 * One worker group per platform. Each job is one bot occupying the platform; the queue's global concurrency
 * equals the platform's limit. Active and delayed (parked) jobs are the bots on the platform, waiting jobs
 * the bots waiting for it (what Bull Board shows). On shutdown, active jobs go back to the front of the
 * queue for the next process to adopt; their containers keep running, as parked bots' do.
 */
export function startPlatformWorker(deps: WorkerDeps, settings: PlatformSettings, platform: Platform): Worker {
  const stopping = new AbortController();
  // Every held bot listens on this one signal: thousands of listeners are expected, not a leak.
  setMaxListeners(0, stopping.signal);
  const log = deps.log.child({ worker: settings.name });
  const worker = deps.makeWorker<JobPayloads['occupy']>(
    platformQueueName(settings.name),
    async (job, token) => {
      const outcome = await occupy(
        { ...deps.occupyContext, settings, platform, log },
        { botId: job.data.botId, parked: job.data.parked === true, queuedAtMs: job.timestamp, signal: stopping.signal },
      );
      if (outcome === 'shutting-down') {
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (outcome === 'parked') {
        await park(job, token!, async () =>
          isTerminal((await deps.occupyContext.repo.findById(job.data.botId))?.status ?? 'ENDED'),
        );
        throw new DelayedError();
      }
      if (outcome === 'awaiting-host') {
        // Parked without the end check: its bot has ended. Reconciliation wakes it every interval, until a
        // worker of the bot's host runs it (and stops the process) or that host counts as gone.
        if (!job.data.parked) await job.updateData({ ...job.data, parked: true });
        await job.moveToDelayed(Date.now() + PARKED_RECHECK_MS, token);
        throw new DelayedError();
      }
      return outcome;
    },
    {
      concurrency: settings.limit,
      // An occupy job lives for a whole meeting and may stall at every worker crash: never give up on it.
      maxStalledCount: 1_000_000,
      lockDuration: deps.lockDurationMs,
      stalledInterval: Math.max(1000, Math.floor(deps.lockDurationMs / 2)),
    },
  );
  worker.on('completed', () => void deps.placement.kick(`capacity freed on ${settings.name}`).catch(() => undefined));
  worker.on('failed', (job, error) => {
    // BullMQ retries it (the re-run adopts the container); the cause is worth an operator's eye.
    deps.log.warn('occupy job failed', { platform: settings.name, botId: job?.data.botId, error: String(error) });
    void deps.placement.kick(`job failed on ${settings.name}`).catch(() => undefined);
  });
  const close = worker.close.bind(worker);
  worker.close = async (force?: boolean) => {
    stopping.abort();
    await close(force);
    await platform.close();
  };
  return worker;
}

/**
 * Parks a running bot's occupy job as a delayed job (PARKED_RECHECK_MS). An end recorded before the job was
 * delayed found no parked job to wake (withdrawal.ts), so the bot is looked at once more afterwards.
 */
export async function park(
  job: Job<JobPayloads['occupy']>,
  token: string,
  hasEnded: () => Promise<boolean>,
): Promise<void> {
  if (!job.data.parked) await job.updateData({ ...job.data, parked: true });
  await job.moveToDelayed(Date.now() + PARKED_RECHECK_MS, token);
  if (await hasEnded()) await job.promote().catch(() => undefined); // already woken meanwhile
}
