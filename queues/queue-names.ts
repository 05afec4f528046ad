/**
 * Every queue, its job payload and its job defaults live in queues/. This file names them; the JobPayloads
 * map types every producer and processor. Payloads carry ids only, never documents or secrets.
 */
export const DISPATCH_QUEUE = 'dispatch';
export const SCHEDULE_QUEUE = 'schedule';
export const SWEEPS_QUEUE = 'sweeps';
export const WEBHOOKS_QUEUE = 'webhooks';
export const platformQueueName = (platform: string) => `platform-${platform}`;
export const reconcileQueueName = (platform: string) => `reconcile-${platform}`;

export interface JobPayloads {
  /**
   * Run the dispatcher: place the oldest queued bots on platforms with free capacity. A tick's reason is
   * DISPATCH_TICK_REASON: only ticks apply the queue timeouts.
   */
  dispatch: { reason: string };
  /** A SCHEDULED bot's join time has come near: queue it for placement. */
  schedule: { botId: string };
  /**
   * One bot's stay on one platform: deploy, hold the capacity while it runs, stop, release. `parked`: the
   * bot runs and the job waits as a delayed job, woken when the bot ends (see workers/occupy.ts).
   */
  occupy: { botId: string; platform: string; parked?: true };
  /** A health sweep; the job name says which. */
  sweep: Record<string, never>;
  /** Compare one platform's containers with the bots the fleet believes are on it. */
  reconcile: { platform: string };
  /** A platform's periodic upkeep (Coolify: slot recovery), on the platform's reconcile queue. */
  upkeep: { platform: string };
  /** Deliver the pending webhook events of one bot, oldest first. */
  webhook: { botId: string };
}

/** Health sweeps, each a job scheduler with this id and job name, run every SWEEP_INTERVAL_MS. */
export const SWEEP_NAMES = ['heartbeat-expiry', 'deploy-timeout', 'leave-grace', 'webhook-wake'] as const;
export type SweepName = (typeof SWEEP_NAMES)[number];
export const reconcileSchedulerId = (platform: string) => `reconcile-${platform}`;
/** Also the job name and the run counter (`<prefix>:sweeps:<id>:runs`), e.g. `slot-recovery-coolify`. */
export const upkeepSchedulerId = (platform: string, upkeep: string) => `${upkeep}-${platform}`;
export const webhookJobId = (botId: string) => `wh.${botId}`;

/** Job ids are deterministic so that retries and duplicate producers never create a second job. */
export const occupyJobId = (botId: string, platform: string) => `${botId}.${platform}`;
export const botIdOfOccupyJob = (jobId: string) => jobId.slice(0, jobId.indexOf('.'));
export const DISPATCH_TICK_SCHEDULER_ID = 'dispatch-tick';
export const DISPATCH_TICK_REASON = 'tick';

/**
 * How long a parked occupy job sleeps before it looks at its bot again. Ending a bot wakes its job at once;
 * this bounds how long an end whose wake-up was lost (the process recording it died first) keeps the
 * container running and the capacity taken, at a cost of one short job run per bot per period.
 */
export const PARKED_RECHECK_MS = 15 * 60 * 1000;

/** The jobs producers add, each with its name and id in one place (their options are the queue's defaults). */
export const occupyJob = (botId: string, platform: string) => ({
  name: 'occupy',
  data: { botId, platform } satisfies JobPayloads['occupy'],
  opts: { jobId: occupyJobId(botId, platform) },
});
export const webhookJob = (botId: string) => ({
  name: 'webhook',
  data: { botId } satisfies JobPayloads['webhook'],
  opts: { jobId: webhookJobId(botId) },
});
export const scheduleJob = (botId: string, delayMs: number) => ({
  name: 'schedule',
  data: { botId } satisfies JobPayloads['schedule'],
  opts: { jobId: botId, delay: delayMs },
});
export const dispatchWakeJob = (reason: string) => ({
  name: 'dispatch',
  data: { reason } satisfies JobPayloads['dispatch'],
  opts: { deduplication: { id: DISPATCH_WAKE_ID } },
});
/**
 * Wake-ups of the dispatcher share this deduplication id, so however many bots are created at once, at most
 * one wake-up waits; the dispatcher clears it when a run starts, so a wake-up during a run is never lost.
 */
export const DISPATCH_WAKE_ID = 'wake';
