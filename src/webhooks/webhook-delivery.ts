import { Redis } from 'ioredis';
import { logger } from '../logger';
import { signWebhook, WebhookOutbox } from './webhook-outbox';

/**
 * Delivers one bot's pending webhook events, oldest first. A failure throws, so BullMQ retries the job with
 * capped exponential backoff; the event stays at the head, so later events wait behind it (order per bot).
 * An event still undelivered after 24 h is abandoned and recorded. Each destination host gets at most
 * `ratePerSecond` requests per second across all processes.
 */
export interface DeliveryDeps {
  outbox: WebhookOutbox;
  redis: Redis;
  prefix: string;
  secret: string;
  ratePerSecond: number;
  timeoutMs?: number;
  recordEvent(botId: string, type: string, data: unknown): Promise<void>;
}

export const WEBHOOK_MAX_AGE_MS = 24 * 3600 * 1000;

/** Delay before retry `attempt` (1-based): base · 2^(attempt−1), capped at one hour, with jitter. */
export function webhookBackoff(attempt: number, baseMs: number): number {
  const capped = Math.min(3600_000, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(capped / 2 + Math.random() * (capped / 2));
}

const TAKE_TOKEN = `
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[1])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or rate)
local last = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
tokens = math.min(rate, tokens + (now - last) * rate / 1000)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], 60000)
return allowed`;

async function waitForToken(deps: DeliveryDeps, host: string): Promise<void> {
  const key = `${deps.prefix}:webhook-rate:${host}`;
  while ((await deps.redis.eval(TAKE_TOKEN, 1, key, Date.now(), deps.ratePerSecond)) !== 1) {
    await new Promise((resolve) => setTimeout(resolve, 1000 / deps.ratePerSecond));
  }
}

export async function deliverPending(deps: DeliveryDeps, botId: string): Promise<number> {
  let delivered = 0;
  for (let pending = await deps.outbox.next(botId); pending; pending = await deps.outbox.next(botId)) {
    const { url, event } = pending;
    if (Date.now() - Date.parse(event.createdAt) > WEBHOOK_MAX_AGE_MS) {
      logger.warn('webhook abandoned after 24 h', { botId, eventId: event.id });
      await deps.recordEvent(botId, 'webhook.abandoned', { eventId: event.id });
      await deps.outbox.done(botId, event);
      continue;
    }
    await waitForToken(deps, new URL(url).host);
    const body = JSON.stringify(event);
    const timestamp = Math.floor(Date.now() / 1000);
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'meeboter-webhooks',
        'x-meeboter-event-id': event.id,
        'x-meeboter-timestamp': String(timestamp),
        'x-meeboter-signature': signWebhook(deps.secret, timestamp, body),
      },
      body,
      signal: AbortSignal.timeout(deps.timeoutMs ?? 10_000),
    });
    await response.arrayBuffer().catch(() => undefined);
    if (!response.ok) throw new Error(`webhook ${event.id} answered HTTP ${response.status}`);
    await deps.outbox.done(botId, event);
    delivered++;
  }
  return delivered;
}
