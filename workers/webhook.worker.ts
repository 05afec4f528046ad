import { Worker } from 'bullmq';
import { deliverPending, DeliveryDeps, webhookBackoff } from './webhook-delivery';
import { JobPayloads, WEBHOOKS_QUEUE } from '../queues/queue-names';
import { WorkerDeps } from './worker-deps';

/**
 * Webhook delivery, in its own queue so slow receivers never hold up placement. One job per bot at a time
 * (job id per bot) keeps each bot's events in order.
 */
export function startWebhookWorker(deps: WorkerDeps, delivery: DeliveryDeps, retryBaseMs: number): Worker {
  const worker = deps.makeWorker<JobPayloads['webhook']>(
    WEBHOOKS_QUEUE,
    (job) => deliverPending(delivery, job.data.botId),
    {
      concurrency: 20,
      settings: { backoffStrategy: (attemptsMade: number) => webhookBackoff(attemptsMade, retryBaseMs) },
    },
  );
  // An event recorded while the job was finishing found the job still there and did not add a new one.
  worker.on('completed', (job) => {
    void delivery.outbox
      .pending(job.data.botId)
      .then((n) => (n > 0 ? delivery.outbox.wake(job.data.botId) : undefined))
      .catch(() => undefined);
  });
  return worker;
}
