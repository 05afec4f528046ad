import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { playBots, startAwsPeer } from './support/aws';
import { CoolifyServer } from './support/coolify-server';
import { coolifyEnv, startCoolifyWithBots } from './support/coolify';
import { botToken } from '../src/auth/bot-token';
import { createSlotRecords } from '../src/platforms/coolify/slot.records';
import { meetings, startTestFleet, TestFleet, waitForStatus } from './support/fleet';
import { imageClient } from './support/upstream-bot';
import { HEARTBEAT_TIMEOUT_MS, livesThroughTrpc, livesWhenPlayed, SHORT_DEADLINES } from './support/upstream-life';

/**
 * A bot image's whole life through the upstream protocol from the env the platform really gave its
 * container: the task overrides moto holds (aws), the env of a Coolify test server's slot (coolify), each
 * played by the stand-in upstream bot image. (k8s: test/trpc.k8s.test.ts.)
 */
jest.setTimeout(300_000);

describe('aws', () => {
  livesWhenPlayed('aws', 'its task overrides', startAwsPeer, (peer) => playBots(peer, { protocol: 'upstream' }), {
    AWS_BOT_LIMIT: '5',
    LOCAL_RUN_DIR: mkdtempSync(path.join(os.tmpdir(), 'meeboter-trpc-aws-')),
  });
});

describe('coolify', () => {
  let coolify: CoolifyServer;
  let t: TestFleet;
  beforeAll(async () => {
    coolify = await startCoolifyWithBots('upstream');
    t = await startTestFleet({
      PLATFORM_PRIORITY: 'coolify',
      COOLIFY_BOT_LIMIT: '3',
      ...coolifyEnv(coolify, { COOLIFY_MEETING_PLATFORMS: 'zoom', COOLIFY_MIN_IDLE_SLOTS: '1' }),
      SLOT_RECOVERY_INTERVAL_MS: '1000',
      ...SHORT_DEADLINES,
    });
  });
  afterAll(async () => {
    await t?.close();
    await coolify?.close();
  });

  it('a bot lives its whole life from its slot env', async () => {
    await livesThroughTrpc(t, meetings.zoom, HEARTBEAT_TIMEOUT_MS);
  });

  it('getSlot by POOL_SLOT_UUID answers the bot the slot holds, to that bot only', async () => {
    const bot = (
      await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, displayName: 'standin:leave' } })
    ).body;
    await waitForStatus(t, bot.id, ['IN_CALL'], 60_000);
    const slots = await createSlotRecords(t.fleet.mongo, t.fleet.fleetId).all();
    const held = slots.find((slot) => slot.botId === bot.id)!;
    const own = imageClient(t.env.PUBLIC_URL, botToken(t.env.BOT_TOKEN_SECRET, bot.id, bot.number));
    for (const uuid of [held.applicationUuid!, held._id]) {
      expect(await own.infrastructure.coolify.pool.getSlot.query({ poolSlotUuid: uuid })).toMatchObject({
        id: bot.number,
        displayName: 'standin:leave',
      });
    }
    const stranger = (
      await t.request('POST', '/api/bots', {
        body: { meeting: meetings.zoom, joinAt: new Date(Date.now() + 3600_000).toISOString() },
      })
    ).body;
    const theirs = imageClient(t.env.PUBLIC_URL, botToken(t.env.BOT_TOKEN_SECRET, stranger.id, stranger.number));
    const refused = await theirs.infrastructure.coolify.pool.getSlot
      .query({ poolSlotUuid: held.applicationUuid! })
      .catch((error) => error);
    expect(refused.data).toMatchObject({ code: 'FORBIDDEN' });
    expect(
      (await own.infrastructure.coolify.pool.getSlot.query({ poolSlotUuid: 'no-such-slot' }).catch((error) => error))
        .data,
    ).toMatchObject({ code: 'NOT_FOUND' });
    await t.request('DELETE', `/api/bots/${bot.id}`);
  });
});
