import { createHmac } from 'node:crypto';
import { Redis } from 'ioredis';
import { webhookJob } from '../../queues/queue-names';
import { WebhooksQueue } from '../../queues/queues';
import { toBotJson } from '../store/bot.mapper';
import { BotDoc } from '../store/models';

/**
 * Webhook events waiting for delivery, per bot, in a Redis sorted set scored by the bot's status version: so
 * they leave in the order the changes happened even when the changes were recorded by several processes,
 * and a retried delivery is the same event (same id) as the first try.
 */
export interface WebhookEvent {
  /** Stable per logical event: `evt_<botId>_<statusVersion>`. */
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
  /** Records the bot's current status as an event for its callbackUrl (if any) and wakes delivery. */
  enqueue(bot: BotDoc): Promise<void>;
  next(botId: string): Promise<PendingWebhook | null>;
  /** Removes a delivered (or abandoned) event. */
  done(botId: string, event: WebhookEvent): Promise<void>;
  pending(botId: string): Promise<number>;
  /** Wakes the bot's delivery job; a no-op while one is already waiting or running. */
  wake(botId: string): Promise<void>;
}

export function createWebhookOutbox(redis: Redis, prefix: string, queue: WebhooksQueue): WebhookOutbox {
  const key = (botId: string) => `${prefix}:webhooks:${botId}`;
  const wake = async (botId: string) => {
    const { name, data, opts } = webhookJob(botId);
    await queue.add(name, data, opts);
  };
  return {
    async enqueue(bot) {
      if (!bot.callbackUrl) return;
      const botId = String(bot._id);
      const event: WebhookEvent = {
        id: `evt_${botId}_${bot.statusVersion}`,
        type: 'bot.status',
        createdAt: (bot.statusChangedAt ?? new Date()).toISOString(),
        data: { bot: toBotJson(bot) },
      };
      const pending: PendingWebhook = { url: bot.callbackUrl, event };
      await redis.zadd(key(botId), 'NX', bot.statusVersion, JSON.stringify(pending));
      await wake(botId);
    },
    async next(botId) {
      const [head] = await redis.zrange(key(botId), 0, 0);
      return head ? (JSON.parse(head) as PendingWebhook) : null;
    },
    async done(botId, event) {
      const version = Number(event.id.slice(event.id.lastIndexOf('_') + 1));
      await redis.zremrangebyscore(key(botId), version, version);
    },
    pending: (botId) => redis.zcard(key(botId)),
    wake,
  };
}

/** `X-Meeboter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}
