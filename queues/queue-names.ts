/**
 * Every queue, its job payload and its job defaults live in queues/. This file names them; the JobPayloads
 * map types every producer and processor. Payloads carry ids only, never documents or secrets.
 */
export const DISPATCH_QUEUE = 'dispatch';
export const SCHEDULE_QUEUE = 'schedule';
export const platformQueueName = (platform: string) => `platform-${platform}`;

export interface JobPayloads {
  /** Run the dispatcher: place the oldest queued bots on platforms with free capacity. */
  dispatch: { reason: string };
  /** A SCHEDULED bot's join time has come near: queue it for placement. */
  schedule: { botId: string };
  /** One bot's stay on one platform: deploy, hold the capacity while it runs, stop, release. */
  occupy: { botId: string; platform: string };
}

/** Job ids are deterministic so that retries and duplicate producers never create a second job. */
export const occupyJobId = (botId: string, platform: string) => `${botId}.${platform}`;
export const DISPATCH_TICK_SCHEDULER_ID = 'dispatch-tick';
