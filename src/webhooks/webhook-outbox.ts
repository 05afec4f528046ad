import { createHmac } from 'node:crypto';
import { Redis } from 'ioredis';
import { webhookJob } from '../../queues/queue-names';
import { WebhooksQueue } from '../../queues/queues';
import { KeyChange } from '../store/bot-changes';
import { toBotJson } from '../store/bot.mapper';
import { BotDoc } from '../store/models';

/**
 * Webhook events waiting for delivery, per bot, in a Redis sorted set scored by the bot's status version: so
 * they leave in the order the changes happened even when the changes were recorded by several processes,
 * and a retried delivery is the same event (same id) as the first try. An event is recorded in the Redis step
 * that changes the status (`announce`, one of the change's key changes), so a status change is never without
 * its event, whichever process dies after it; the delivery job is woken after that step (`wake`).
 */
export interface WebhookEvent {
  /**
   * Stable per logical event: `evt_<botId>_<statusVersion>_<ms of the status change>`. The time is part of it
   * because a Redis that lost its last writes gives a status version again, to another change.
   */
  id: string;
  type: 'bot.status';
  createdAt: string;
  data: { bot: ReturnType<typeof toBotJson> };
}

export interface PendingWebhook {
  url: string;
  event: WebhookEvent;
}

export interface WebhookOutbox {
  /** The key change that records the bot's current status as an event for its callbackUrl (none without one). */
  announce(bot: BotDoc): KeyChange[];
  /** Records the event (if not recorded already) and wakes its delivery: for an event whose step was lost. */
  enqueue(bot: BotDoc): Promise<void>;
  next(botId: string): Promise<PendingWebhook | null>;
  /** Removes a delivered (or abandoned) event. */
  done(botId: string, event: WebhookEvent): Promise<void>;
  pending(botId: string): Promise<number>;
  /** Wakes the bot's delivery job; a no-op while one is already waiting or running. */
  wake(botId: string): Promise<void>;
}

export const webhookEventId = (botId: string, statusVersion: number, statusChangedAt: Date | undefined) =>
  `evt_${botId}_${statusVersion}_${statusChangedAt ? new Date(statusChangedAt).getTime() : 0}`;

/** The status version an event id names (ids from before the change time was part of them end with it). */
const versionOf = (eventId: string) => Number(eventId.split('_')[2]);

export function createWebhookOutbox(redis: Redis, prefix: string, queue: WebhooksQueue): WebhookOutbox {
  const key = (botId: string) => `${prefix}:webhooks:${botId}`;
  const wake = async (botId: string) => {
    const { name, data, opts } = webhookJob(botId);
    await queue.add(name, data, opts);
  };
  const pendingOf = (bot: BotDoc): PendingWebhook => {
    const botId = String(bot._id);
    return {
      url: bot.callbackUrl!,
      event: {
        id: webhookEventId(botId, bot.statusVersion, bot.statusChangedAt),
        type: 'bot.status',
        createdAt: (bot.statusChangedAt ? new Date(bot.statusChangedAt) : new Date()).toISOString(),
        data: { bot: toBotJson(bot) },
      },
    };
  };
  return {
    announce(bot) {
      if (!bot.callbackUrl) return [];
      const member = JSON.stringify(pendingOf(bot));
      return [{ op: 'zadd', key: key(String(bot._id)), score: bot.statusVersion, member }];
    },
    async enqueue(bot) {
      if (!bot.callbackUrl) return;
      await redis.zadd(key(String(bot._id)), 'NX', bot.statusVersion, JSON.stringify(pendingOf(bot)));
      await wake(String(bot._id));
    },
    async next(botId) {
      const [head] = await redis.zrange(key(botId), 0, 0);
      return head ? (JSON.parse(head) as PendingWebhook) : null;
    },
    async done(botId, event) {
      const version = versionOf(event.id);
      // two events may share a status version (see WebhookEvent.id): only this one goes
      const members = await redis.zrangebyscore(key(botId), version, version);
      const delivered = members.filter((member) => (JSON.parse(member) as PendingWebhook).event.id === event.id);
      if (delivered.length > 0) await redis.zrem(key(botId), ...delivered);
    },
    pending: (botId) => redis.zcard(key(botId)),
    wake,
  };
}

/** `X-Meeboter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}
