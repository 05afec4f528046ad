import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import { createRedis, onReconnected } from '../src/connections';
import { startFerretDb, startRedis, StartedPeer } from '../src/peers';
import { meetings, sleep, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * A Redis that comes back without its last writes (a replica that lagged, promoted in a failover; an
 * append-only file fsynced every second), while MongoDB holds them: the fleet's own Redis (a private server
 * with its append-only file) is put back to the bot's earlier document and loses its pending webhook events,
 * then restarts on that file. Without the repair after the reconnection, Redis goes on
 * from the older version (the bot answered IN_CALL forever, MongoDB ENDED, its next versions given twice)
 * and the end's webhook event is never sent.
 */
jest.setTimeout(120_000);

interface Received {
  eventId: string;
  body: string;
  answered: number;
}

let dir: string;
let redis: StartedPeer;
let ferret: StartedPeer;
let admin: IORedis;
let t: TestFleet;
let server: http.Server;
const received: Received[] = [];
let accepting = true;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-lost-writes-'));
  redis = await startRedis(path.join(dir, 'redis'), undefined, true);
  // its own MongoDB too, which a test stops
  ferret = await startFerretDb(path.join(dir, 'ferret'));
  admin = new IORedis(redis.url);
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const answered = accepting ? 200 : 503;
      received.push({ eventId: String(req.headers['x-meeboter-event-id']), body, answered });
      res.writeHead(answered).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t = await startTestFleet({
    REDIS_URL: redis.url,
    MONGODB_URI: ferret.url,
    PLATFORM_PRIORITY: 'sim',
    WEBHOOK_RETRY_BASE_MS: '100',
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
  });
});

afterAll(async () => {
  await t?.close();
  admin?.disconnect();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await redis?.stop();
  await ferret?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const statusOf = async (id: string) => (await t.request('GET', `/api/bots/${id}`)).body.status as string;
const statusIn = (r: Received) => JSON.parse(r.body).data.bot.status as string;

const restart = async (peer: StartedPeer, start: (dir: string, port: number) => Promise<StartedPeer>, name: string) => {
  await peer.stop();
  return start(path.join(dir, name), Number(new URL(peer.url).port));
};
const restartRedis = async () => (redis = await restart(redis, (at, port) => startRedis(at, port, true), 'redis'));

/**
 * A bot in call whose end MongoDB holds and Redis has lost, with the end's webhook events: Redis holds the
 * bot's document from before the end again, and no pending event (to be followed by a restart of Redis).
 */
async function endLostByRedis() {
  const prefix = t.env.REDIS_PREFIX;
  const callbackUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const created = await t.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, callbackUrl, metadata: { 'sim.durationMs': '600000' } },
  });
  expect(created.status).toBe(201);
  const id = created.body.id as string;
  const botKey = `${prefix}:bot:${id}`;
  const stored = () => t.fleet.models.Bot.findById(id).lean<Record<string, unknown>>();
  await waitFor(async () => (await stored())?.status === 'IN_CALL', 'MongoDB to hold the bot in call');
  await waitFor(
    () => received.some((r) => r.answered === 200 && r.eventId.startsWith(`evt_${id}_`) && statusIn(r) === 'IN_CALL'),
    'the IN_CALL webhook',
  );
  const inCall = await admin.dumpBuffer(botKey);

  // What Redis is about to lose: the end (MongoDB receives it) and its webhook events (the receiver refuses them).
  accepting = false;
  expect((await t.request('DELETE', `/api/bots/${id}`)).status).toBeLessThan(300);
  await waitFor(async () => (await stored())?.status === 'ENDED', 'MongoDB to hold the end');
  await waitFor(
    async () => (await t.fleet.models.LiveBot.countDocuments({ _id: id })) === 0,
    'the bot to leave the live index',
  );
  await waitFor(
    () => received.some((r) => r.answered === 503 && r.eventId.startsWith(`evt_${id}_`)),
    'a refused webhook',
  );
  const ended = (await stored())!;

  await admin.restore(botKey, 0, inCall, 'REPLACE');
  await admin.del(`${prefix}:webhooks:${id}`);
  expect(await statusOf(id)).toBe('IN_CALL');
  accepting = true;
  return { id, botKey, ended, stored };
}

/** Redis holds MongoDB's version of the bot again, its end is announced under its own id, one body an id. */
async function expectRepaired({ id, botKey, ended, stored }: Awaited<ReturnType<typeof endLostByRedis>>) {
  await waitFor(async () => (await statusOf(id)) === 'ENDED', 'the bot ended again in Redis', 60_000);
  expect(Number(await admin.hget(botKey, 'version'))).toBe(ended.changeVersion);
  const endId = `evt_${id}_${Number(ended.statusVersion)}_${(ended.statusChangedAt as Date).getTime()}`;
  await waitFor(
    () => received.some((r) => r.answered === 200 && r.eventId === endId),
    'the ENDED webhook after the repair',
  );
  const bodies = new Map<string, Set<string>>();
  for (const r of received) bodies.set(r.eventId, (bodies.get(r.eventId) ?? new Set()).add(r.body));
  expect([...bodies].filter(([, distinct]) => distinct.size > 1)).toEqual([]);
  // and MongoDB still holds the end it had: nothing built on the older version overwrote it
  await t.fleet.repo.liveBots();
  expect(await stored()).toMatchObject({ status: 'ENDED', changeVersion: ended.changeVersion });
}

it('after Redis lost writes MongoDB holds, the bot goes on from MongoDB’s version and the lost status change is announced', async () => {
  const lost = await endLostByRedis();
  await restartRedis();
  await expectRepaired(lost);
});

it('with MongoDB away when Redis comes back, the comparison is tried again until MongoDB answers', async () => {
  const lost = await endLostByRedis();
  await ferret.stop();
  await restartRedis();
  await waitFor(async () => (await t.fleet.redis.ping().catch(() => null)) === 'PONG', 'the fleet back on Redis');
  // longer than a try takes to fail (MongoDB's server selection gives up after 5 s)
  await sleep(7_000);
  expect(await statusOf(lost.id)).toBe('IN_CALL');
  ferret = await startFerretDb(path.join(dir, 'ferret'), Number(new URL(ferret.url).port));
  await expectRepaired(lost);
});

it('a reconnection tells a dropped connection to the same server from a restarted one', async () => {
  const client = createRedis(redis.url, 'producer', 'reconnect-test');
  const sameServer: boolean[] = [];
  onReconnected(client, (_lostAt, same) => void same.then((answer) => sameServer.push(answer)));
  try {
    await waitFor(async () => (await client.ping().catch(() => null)) === 'PONG', 'connected');
    await admin.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await waitFor(() => sameServer.length === 1, 'the reconnection to the same server');
    await restartRedis();
    await waitFor(() => sameServer.length === 2, 'the reconnection to the restarted server');
    expect(sameServer).toEqual([true, false]);
  } finally {
    client.disconnect();
  }
});
