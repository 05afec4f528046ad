import { setMaxListeners } from 'node:events';
import { Worker, WaitingError } from 'bullmq';
import { PlatformSettings } from '../src/config';
import { occupy } from './occupy';
import { Platform } from '../src/platforms/platform';
import { JobPayloads, platformQueueName } from '../queues/queue-names';
import { WorkerDeps } from './worker-deps';

/**
 * One worker group per platform. Each job is one bot occupying the platform; the queue's global concurrency
 * equals the platform's limit, so active jobs are the bots on the platform and waiting jobs the bots waiting
 * for it (what Bull Board shows). On shutdown, held jobs go back to the front of the queue for the next
 * process to adopt; their containers keep running.
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
        { botId: job.data.botId, queuedAtMs: job.timestamp, signal: stopping.signal },
      );
      if (outcome === 'shutting-down') {
        await job.moveToWait(token);
        throw new WaitingError();
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
