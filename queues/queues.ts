import { DefaultJobOptions, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { logger } from '../src/logger';
import {
  DISPATCH_QUEUE,
  JobPayloads,
  platformQueueName,
  reconcileQueueName,
  SCHEDULE_QUEUE,
  SWEEPS_QUEUE,
  WEBHOOKS_QUEUE,
} from './queue-names';

/**
 * The only place that constructs BullMQ queues. `createQueues` opens one Queue per name on a shared
 * producer connection that the caller owns.
 */
export type DispatchQueue = Queue<JobPayloads['dispatch']>;
export type ScheduleQueue = Queue<JobPayloads['schedule']>;
export type PlatformQueue = Queue<JobPayloads['occupy']>;
export type SweepsQueue = Queue<JobPayloads['sweep']>;
export type ReconcileQueue = Queue<JobPayloads['reconcile']>;
export type WebhooksQueue = Queue<JobPayloads['webhook']>;

export interface Queues {
  dispatch: DispatchQueue;
  schedule: ScheduleQueue;
  platforms: Map<string, PlatformQueue>;
  sweeps: SweepsQueue;
  reconcile: Map<string, ReconcileQueue>;
  webhooks: WebhooksQueue;
  all(): Queue[];
  /** Sets the global concurrency limits (kept in Redis: set again after Redis lost its data). */
  applyLimits(): Promise<void>;
  close(): Promise<void>;
}

export interface PlatformQueueSpec {
  name: string;
  limit: number;
}

const KEEP_FINISHED = { age: 24 * 3600, count: 10000 };

export const dispatchJobOptions: DefaultJobOptions = {
  removeOnComplete: true,
  removeOnFail: { count: 1000 },
  attempts: 5,
  backoff: { type: 'exponential', delay: 200 },
};

export const scheduleJobOptions: DefaultJobOptions = {
  removeOnComplete: { count: 1000 },
  removeOnFail: { count: 1000 },
  attempts: 10,
  backoff: { type: 'exponential', delay: 1000 },
};

/** Sweeps run again at the next interval; a failed run is not retried. */
export const sweepJobOptions: DefaultJobOptions = {
  removeOnComplete: { count: 100 },
  removeOnFail: { count: 100 },
  attempts: 1,
};

/**
 * Webhook deliveries retry with capped exponential backoff (see workers/webhook-delivery.ts) until the pending
 * event is WEBHOOK_RETRY_MAX_AGE_MS old (at most 7 days, well within these attempts at the one-hour cap); the
 * job id is per bot, so one bot's events go out one at a time, in order.
 */
export const webhookJobOptions: DefaultJobOptions = {
  removeOnComplete: true,
  removeOnFail: { count: 1000 },
  attempts: 1000,
  backoff: { type: 'webhook' },
};

/**
 * An occupy job lives as long as its bot holds the platform. Finished jobs are kept for a day so their
 * deterministic ids stay taken: a late duplicate add is then a no-op instead of a second deploy.
 * Retries cover transient failures of our own stores (the processor adopts the running container).
 */
export const occupyJobOptions: DefaultJobOptions = {
  removeOnComplete: KEEP_FINISHED,
  removeOnFail: KEEP_FINISHED,
  attempts: 20,
  backoff: { type: 'exponential', delay: 1000 },
};

export async function createQueues(connection: Redis, prefix: string, platforms: PlatformQueueSpec[]): Promise<Queues> {
  const open = <T>(name: string, defaultJobOptions: DefaultJobOptions) => {
    const queue = new Queue<T>(name, { connection, prefix, defaultJobOptions });
    queue.on('error', (error) => logger.warn('queue error', { queue: name, error: String(error) }));
    return queue;
  };
  const dispatch = open<JobPayloads['dispatch']>(DISPATCH_QUEUE, dispatchJobOptions);
  const schedule = open<JobPayloads['schedule']>(SCHEDULE_QUEUE, scheduleJobOptions);
  const sweeps = open<JobPayloads['sweep']>(SWEEPS_QUEUE, sweepJobOptions);
  const webhooks = open<JobPayloads['webhook']>(WEBHOOKS_QUEUE, webhookJobOptions);
  const platformQueues = new Map<string, PlatformQueue>();
  const reconcile = new Map<string, ReconcileQueue>();
  for (const platform of platforms) {
    platformQueues.set(platform.name, open<JobPayloads['occupy']>(platformQueueName(platform.name), occupyJobOptions));
    reconcile.set(platform.name, open<JobPayloads['reconcile']>(reconcileQueueName(platform.name), sweepJobOptions));
  }
  // Global concurrency lives in Redis, so it holds across every worker process: one dispatcher at a time,
  // and never more active occupy jobs on a platform than its bot limit.
  const applyLimits = async () => {
    await dispatch.setGlobalConcurrency(1);
    for (const platform of platforms) await platformQueues.get(platform.name)!.setGlobalConcurrency(platform.limit);
  };
  await applyLimits();

  const all = () =>
    [dispatch, schedule, sweeps, webhooks, ...platformQueues.values(), ...reconcile.values()] as Queue[];
  return {
    dispatch,
    schedule,
    platforms: platformQueues,
    sweeps,
    reconcile,
    webhooks,
    all,
    applyLimits,
    close: async () => {
      await Promise.all(all().map((queue) => queue.close()));
    },
  };
}
