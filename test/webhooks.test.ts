import { createHmac } from 'node:crypto';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { webhookJobId } from '../queues/queue-names';
import { changesAlongsideStatus } from '../src/fleet';
import { createLifecycle } from '../src/services/lifecycle.service';
import { sweepWebhookWakes, WEBHOOK_REWAKE_AFTER_MS } from '../workers/sweeps';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * Signed webhooks from their own queue: a real HTTP receiver on 127.0.0.1 that fails its first two requests.
 */
jest.setTimeout(60_000);

interface Received {
  eventId: string;
  timestamp: string;
  signature: string;
  body: string;
  answered: number;
}

let t: TestFleet;
let server: http.Server;
const received: Received[] = [];
let failuresLeft = 2;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const answered = failuresLeft-- > 0 ? 503 : 200;
      received.push({
        eventId: String(req.headers['x-meeboter-event-id']),
        timestamp: String(req.headers['x-meeboter-timestamp']),
        signature: String(req.headers['x-meeboter-signature']),
        body,
        answered,
      });
      res.writeHead(answered).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t = await startTestFleet({
    PLATFORM_PRIORITY: 'sim',
    WEBHOOK_SECRET: 'whsec-test-0123456789abcdef',
    WEBHOOK_RETRY_BASE_MS: '100',
    // the receiver is on loopback, which only an explicit allow list opens
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
  });
});
afterAll(async () => {
  await t.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

it('delivers every status change, signed, in order, retrying a failing receiver with the same event id', async () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const created = await t.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, callbackUrl: url, metadata: { 'sim.durationMs': '200' } },
  });
  const id = created.body.id;
  await waitFor(async () => (await t.request('GET', `/api/bots/${id}`)).body.status === 'ENDED', 'the bot to end');
  await waitFor(
    () => received.filter((r) => r.answered === 200).some((r) => JSON.parse(r.body).data.bot.status === 'ENDED'),
    'the ENDED webhook',
  );

  // the first event was refused twice and accepted on the third try, with the same id each time
  expect(received.slice(0, 3).map((r) => r.answered)).toEqual([503, 503, 200]);
  expect(new Set(received.slice(0, 3).map((r) => r.eventId)).size).toBe(1);
  expect(received.slice(0, 3).map((r) => r.body)).toEqual(Array(3).fill(received[0].body));

  // every delivery verifies against the shared secret, over "<timestamp>.<body>"
  for (const r of received) {
    const expected = createHmac('sha256', 'whsec-test-0123456789abcdef')
      .update(`${r.timestamp}.${r.body}`)
      .digest('hex');
    expect(r.signature).toBe(`t=${r.timestamp},v1=${expected}`);
  }

  // accepted events: one per status change, in the bot's order, each once
  const accepted = received.filter((r) => r.answered === 200).map((r) => JSON.parse(r.body));
  expect(accepted.map((e) => e.data.bot.status)).toEqual(['DEPLOYING', 'JOINING_CALL', 'IN_CALL', 'LEAVING', 'ENDED']);
  // the id: the bot, its status version and the time of the change (a version alone may come twice)
  expect(accepted.map((e) => e.id)).toEqual(
    accepted.map((e, i) => `evt_${id}_${i + 1}_${Date.parse(e.createdAt as string)}`),
  );
  expect(
    accepted.every((e) => e.type === 'bot.status' && e.data.bot.id === id && !('password' in e.data.bot.meeting)),
  ).toBe(true);
});

it('an event whose delivery was never woken (its process died right after the change) is delivered by the sweep', async () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const joinAt = new Date(Date.now() + 3600_000).toISOString();
  const created = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, callbackUrl: url, joinAt } });
  expect(created.body.status).toBe('SCHEDULED');
  const id = created.body.id as string;
  // The fleet's own step, in a process that dies as soon as the change is recorded: nothing wakes the delivery.
  const dying = createLifecycle(t.fleet.repo, {
    changesAlongside: changesAlongsideStatus(t.fleet.liveState, t.fleet.globalQueue, t.env.REDIS_PREFIX),
    announce: (bot) => t.fleet.outbox.announce(bot),
    withdraw: () => Promise.reject(new Error('the process died')),
    lastHeartbeat: () => Promise.resolve(null),
    notify: () => Promise.reject(new Error('the process died')),
  });
  await expect(dying.end(id, 'ENDED', 'CANCELLED')).rejects.toThrow('the process died');
  expect(await t.fleet.outbox.pending(id)).toBe(1);
  expect(await t.fleet.queues.webhooks.getJob(webhookJobId(id))).toBeUndefined();

  const deps = { outbox: t.fleet.outbox };
  // not yet: a delivery may still be on its way
  expect(await sweepWebhookWakes(deps)).toEqual({ read: 0, acted: 0 });
  expect(await sweepWebhookWakes(deps, Date.now() + WEBHOOK_REWAKE_AFTER_MS + 1)).toEqual({ read: 1, acted: 1 });
  await waitFor(
    () => received.some((r) => r.answered === 200 && r.eventId.startsWith(`evt_${id}_`)),
    'the end delivered after the sweep',
  );
  const delivered = received.filter((r) => r.eventId.startsWith(`evt_${id}_`)).map((r) => JSON.parse(r.body));
  expect(delivered.map((e) => e.data.bot.status)).toEqual(['ENDED']);
  // delivered, it leaves the waiting set: a later sweep finds nothing to wake
  await waitFor(async () => (await t.fleet.outbox.waitingSince(Date.now() + 3600_000, 10)).length === 0, 'settled');
  expect(await sweepWebhookWakes(deps, Date.now() + WEBHOOK_REWAKE_AFTER_MS + 1)).toEqual({ read: 0, acted: 0 });
});
