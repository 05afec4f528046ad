import http from 'node:http';
import https from 'node:https';
import { LookupFunction } from 'node:net';
import { Redis } from 'ioredis';
import { logger } from '../src/logger';
import { metrics } from '../src/metrics';
import { DestinationCheck, ResolvedAddress } from '../src/webhooks/destination';
import { PendingWebhook, signWebhook, WebhookEvent, WebhookOutbox } from '../src/webhooks/webhook-outbox';
import { RedisScript } from '../src/redis-script';

/**
 * Delivers one bot's pending webhook events, oldest first. A failure throws, so BullMQ retries the job with
 * capped exponential backoff; the event stays at the head, so later events wait behind it (order per bot).
 * Each event's destination is checked again before it is sent (destination.ts): a refused one is abandoned
 * at once, with the reason in the bot's events; so is an event whose try fails once it is `maxAgeMs` old
 * (WEBHOOK_RETRY_MAX_AGE_MS), with that try's failure as the reason. Each destination host gets at
 * most `ratePerSecond` requests per second across all processes.
 */
export interface DeliveryDeps {
  outbox: WebhookOutbox;
  redis: Redis;
  prefix: string;
  secret: string;
  ratePerSecond: number;
  checkDestination: DestinationCheck;
  /** How long after its status change an event is still tried (WEBHOOK_RETRY_MAX_AGE_MS). */
  maxAgeMs: number;
  timeoutMs?: number;
  recordEvent(botId: string, type: string, fields: { reason: string; data: unknown }): Promise<void>;
}

/** Delay before retry `attempt` (1-based): base · 2^(attempt−1), capped at one hour, with jitter. */
export function webhookBackoff(attempt: number, baseMs: number): number {
  const capped = Math.min(3600_000, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(capped / 2 + Math.random() * (capped / 2));
}

const TAKE_TOKEN = new RedisScript(`
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[1])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or rate)
local last = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
tokens = math.min(rate, tokens + (now - last) * rate / 1000)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], 60000)
return allowed`);

async function waitForToken(deps: DeliveryDeps, host: string): Promise<void> {
  const key = `${deps.prefix}:webhook-rate:${host}`;
  while ((await TAKE_TOKEN.run(deps.redis, 1, key, Date.now(), deps.ratePerSecond)) !== 1) {
    await new Promise((resolve) => setTimeout(resolve, 1000 / deps.ratePerSecond));
  }
}

/**
 * POSTs to `url` at the addresses the destination check approved, never at a fresh DNS answer, so a host
 * cannot pass the check and then resolve elsewhere (TLS still verifies the URL's host name). Resolves with
 * the status code; a redirect is an answer like any other, never followed.
 */
export function postToAddresses(
  url: URL,
  addresses: ResolvedAddress[],
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
): Promise<number> {
  const pinned: LookupFunction = (_host, options, callback) => {
    if (options.all) callback(null, addresses);
    else callback(null, addresses[0].address, addresses[0].family);
  };
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      // no shared agent: a pooled connection would skip the lookup above
      { method: 'POST', headers, lookup: pinned, agent: false, signal: AbortSignal.timeout(timeoutMs) },
      (res) => {
        res.on('error', reject);
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.resume();
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const inWords = (ms: number) =>
  ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;

/** One try of one event: delivered, refused for good (its destination), or failed (worth another try). */
type TryOutcome = { delivered: true } | { refused: string } | { failed: string };

async function tryOnce(deps: DeliveryDeps, { url, event }: PendingWebhook): Promise<TryOutcome> {
  const destination = await deps.checkDestination(url);
  if (!destination.allowed) {
    // a host that does not resolve now may later: that is a failed try, not a refusal
    return destination.unresolved
      ? { failed: `callbackUrl ${destination.reason}` }
      : { refused: `callbackUrl ${destination.reason}` };
  }
  await waitForToken(deps, destination.url.host);
  const body = JSON.stringify(event);
  const timestamp = Math.floor(Date.now() / 1000);
  const headers = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'user-agent': 'meeboter-webhooks',
    'x-meeboter-event-id': event.id,
    'x-meeboter-timestamp': String(timestamp),
    'x-meeboter-signature': signWebhook(deps.secret, timestamp, body),
  };
  try {
    const status = await postToAddresses(
      destination.url,
      destination.addresses,
      headers,
      body,
      deps.timeoutMs ?? 10_000,
    );
    if (status >= 200 && status < 300) return { delivered: true };
    const redirect = status >= 300 && status < 400 ? ' (redirects are not followed)' : '';
    return { failed: `answered HTTP ${status}${redirect}` };
  } catch (error) {
    return { failed: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Delivers the bot's pending events in order. A failed try throws, so the job is retried later, unless the
 * event is older than `maxAgeMs`: then it is abandoned with that try's failure as the reason.
 */
export async function deliverPending(deps: DeliveryDeps, botId: string): Promise<number> {
  let delivered = 0;
  const abandon = async (event: WebhookEvent, reason: string) => {
    metrics.webhookDeliveries.inc({ outcome: 'abandoned' });
    logger.warn('webhook abandoned', { botId, eventId: event.id, reason });
    await deps.recordEvent(botId, 'webhook.abandoned', { reason, data: { eventId: event.id } });
    await deps.outbox.done(botId, event);
  };
  for (let pending = await deps.outbox.next(botId); pending; pending = await deps.outbox.next(botId)) {
    const { event } = pending;
    const outcome = await tryOnce(deps, pending);
    if ('refused' in outcome) {
      await abandon(event, outcome.refused);
      continue;
    }
    if ('failed' in outcome) {
      metrics.webhookDeliveries.inc({ outcome: 'failed' });
      if (Date.now() - Date.parse(event.createdAt) > deps.maxAgeMs) {
        await abandon(event, `undelivered after ${inWords(deps.maxAgeMs)}; last try: ${outcome.failed}`);
        continue;
      }
      throw new Error(`webhook ${event.id}: ${outcome.failed}`);
    }
    await deps.outbox.done(botId, event);
    metrics.webhookDeliveries.inc({ outcome: 'delivered' });
    delivered++;
  }
  await deps.outbox.settle(botId);
  return delivered;
}
