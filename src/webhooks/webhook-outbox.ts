import { createHmac } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisScript } from '../redis-script';
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
 * its event, whichever process dies after it; the delivery job is woken after that step (`wake`). The same
 * step puts the bot in `<prefix>:webhooks-waiting` (scored by when), which it leaves once its events are all
 * delivered or abandoned (`settle`): the wake-up sweep wakes the bots in it for too long, so an event whose
 * wake-up was lost (its process died between the two) is delivered all the same.
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
  /** Takes the bot out of the waiting set if it has no event left (after its delivery job emptied it). */
  settle(botId: string): Promise<void>;
  /** Bots that have been waiting since before `since` (ms), at most `limit` of them. */
  waitingSince(since: number, limit: number): Promise<string[]>;
  /**
   * Wakes a bot from the waiting set again (and counts its wait from now) if it still has events, else takes
   * it out; true if it was woken.
   */
  rewake(botId: string): Promise<boolean>;
}

export const webhookEventId = (botId: string, statusVersion: number, statusChangedAt: Date | undefined) =>
  `evt_${botId}_${statusVersion}_${statusChangedAt ? new Date(statusChangedAt).getTime() : 0}`;

/** KEYS: the bot's events, the waiting set. ARGV: the bot's id. */
const SETTLE = new RedisScript(`
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 0`);

/** KEYS: the bot's events, the waiting set. ARGV: the bot's id, now (ms). 1 if it still has events. */
const REWAKE = new RedisScript(`
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
return 1`);

/** The status version an event id names (ids from before the change time was part of them end with it). */
const versionOf = (eventId: string) => Number(eventId.split('_')[2]);

export function createWebhookOutbox(redis: Redis, prefix: string, queue: WebhooksQueue): WebhookOutbox {
  const key = (botId: string) => `${prefix}:webhooks:${botId}`;
  const waiting = `${prefix}:webhooks-waiting`;
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
      const botId = String(bot._id);
      return [
        { op: 'zadd', key: key(botId), score: bot.statusVersion, member: JSON.stringify(pendingOf(bot)) },
        { op: 'zadd', key: waiting, score: Date.now(), member: botId },
      ];
    },
    async enqueue(bot) {
      if (!bot.callbackUrl) return;
      const botId = String(bot._id);
      await redis
        .multi()
        .zadd(key(botId), 'NX', bot.statusVersion, JSON.stringify(pendingOf(bot)))
        .zadd(waiting, Date.now(), botId)
        .exec();
      await wake(botId);
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
    async settle(botId) {
      await SETTLE.run(redis, 2, key(botId), waiting, botId);
    },
    waitingSince: (since, limit) => redis.zrangebyscore(waiting, '-inf', `(${since}`, 'LIMIT', 0, limit),
    async rewake(botId) {
      if ((await REWAKE.run(redis, 2, key(botId), waiting, botId, Date.now())) !== 1) return false;
      await wake(botId);
      return true;
    },
  };
}

/** `X-Meeboter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}
