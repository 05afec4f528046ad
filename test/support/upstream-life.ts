import { TRPCClientError } from '@trpc/client';
import { botToken } from '../../src/auth/bot-token';
import { BotPlayer } from './bot-player';
import { eventsOf, meetings, sleep, startTestFleet, TestFleet, UntypedJson, waitFor, waitForStatus } from './fleet';
import { imageClient } from './upstream-bot';

/**
 * A bot image's whole life through the upstream protocol, on whatever platform runs the stand-in image
 * (upstream-bot.ts) for the fleet: three bots in `meeting`, one of each stand-in mode. The fleet's
 * HEARTBEAT_TIMEOUT_MS must be `heartbeatTimeoutMs`, short, so that staying alive past it shows the
 * heartbeats count.
 */
export async function livesThroughTrpc(t: TestFleet, meeting: Record<string, unknown>, heartbeatTimeoutMs: number) {
  const create = async (displayName: string) => {
    const res = await t.request('POST', '/api/bots', { body: { meeting, displayName } });
    if (res.status !== 201) throw new Error(`POST /api/bots answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body as { id: string; number: number };
  };
  const logsOf = async (ref: string | number) =>
    (await t.request('GET', `/api/bots/${ref}/logs?limit=1000`)).body.data as UntypedJson[];

  const leaver = await create('standin:leave');
  expect(leaver.number).toBeGreaterThan(0);
  await waitForStatus(t, leaver.id, ['IN_CALL'], 90_000);

  const chat = await t.request('POST', `/api/bots/${leaver.number}/chat`, {
    body: { message: 'hello from the owner' },
  });
  expect(chat.status).toBe(202);
  await waitFor(
    async () => (await logsOf(leaver.id)).some((entry) => entry.message === 'chat: hello from the owner'),
    'the chat message in the logs',
  );

  // alive past HEARTBEAT_TIMEOUT_MS on its heartbeats alone
  await sleep(heartbeatTimeoutMs + 1500);
  expect((await t.request('GET', `/api/bots/${leaver.number}`)).body).toMatchObject({
    id: leaver.id,
    number: leaver.number,
    status: 'IN_CALL',
  });

  const events = await eventsOf(t, leaver.id);
  const statuses = events.filter((e) => e.type === 'status').map((e) => e.status);
  expect(statuses.indexOf('JOINING_CALL')).toBeGreaterThan(-1);
  expect(statuses.indexOf('JOINING_CALL')).toBeLessThan(statuses.indexOf('IN_WAITING_ROOM'));
  expect(statuses.indexOf('IN_WAITING_ROOM')).toBeLessThan(statuses.indexOf('IN_CALL'));
  expect(events.map((e) => e.type)).toEqual(
    expect.arrayContaining(['bot.JOINING_CALL', 'bot.IN_WAITING_ROOM', 'bot.IN_CALL']),
  );

  // leave via shouldLeave: the bot learns it from a heartbeat and ends itself
  expect((await t.request('POST', `/api/bots/${leaver.id}/leave`)).status).toBe(200);
  expect(await waitForStatus(t, leaver.id, ['ENDED', 'FATAL'], 30_000)).toMatchObject({
    status: 'ENDED',
    endReason: 'LEFT',
  });
  const logs = await logsOf(leaver.number);
  expect(logs.filter((entry) => entry.message === 'chat: hello from the owner')).toHaveLength(1);
  expect(logs[0]).toMatchObject({ message: 'joining', level: 'INFO', botId: leaver.number });

  // the images' restart check: getConfig after the end must carry PRECONDITION_FAILED
  const client = imageClient(t.env.PUBLIC_URL, botToken(t.env.BOT_TOKEN_SECRET, leaver.id, leaver.number));
  const restart = await client.bots.getConfig.query({ botId: leaver.number }).then(
    () => null,
    (error: TRPCClientError<never>) => error,
  );
  expect(restart?.data).toMatchObject({ code: 'PRECONDITION_FAILED', httpStatus: 412 });
  expect(restart?.message).toContain('PRECONDITION_FAILED');

  const done = await create('standin:done');
  const fatal = await create('standin:fatal');
  expect(await waitForStatus(t, done.id, ['ENDED', 'FATAL'], 90_000)).toMatchObject({
    status: 'ENDED',
    endReason: 'COMPLETED',
    speakerTimeframes: [{ speakerName: 'Ada', start: 0, end: 1500 }],
  });
  expect(await waitForStatus(t, fatal.id, ['ENDED', 'FATAL'], 90_000)).toMatchObject({
    status: 'FATAL',
    endReason: 'BOT_ERROR',
  });
  return { leaver, done, fatal };
}

/** Deadlines short enough that staying alive past them shows the heartbeats count. */
export const HEARTBEAT_TIMEOUT_MS = 3000;
export const SHORT_DEADLINES = {
  HEARTBEAT_TIMEOUT_MS: String(HEARTBEAT_TIMEOUT_MS),
  SWEEP_INTERVAL_MS: '500',
  LEAVE_GRACE_MS: '60000',
};

/**
 * In the calling test file: a fleet on `platform` over a test peer whose containers run no code, a player
 * running the stand-in image from the env each container got, and one bot's whole life (`what`: that env).
 */
export function livesWhenPlayed<P extends { env: Record<string, string>; close(): Promise<void> }>(
  platform: string,
  what: string,
  startPeer: () => Promise<P>,
  play: (peer: P) => BotPlayer,
  fleetEnv: Record<string, string>,
): void {
  let peer: P | undefined;
  let player: BotPlayer | undefined;
  let t: TestFleet | undefined;
  beforeAll(async () => {
    peer = await startPeer();
    t = await startTestFleet({ PLATFORM_PRIORITY: platform, ...SHORT_DEADLINES, ...fleetEnv, ...peer.env });
    player = play(peer);
  }, 300_000);
  afterAll(async () => {
    await player?.stop();
    await t?.close();
    await peer?.close();
  });

  it(`a bot lives its whole life from ${what}`, async () => {
    await livesThroughTrpc(t!, meetings.zoom, HEARTBEAT_TIMEOUT_MS);
    expect(player!.errors).toEqual([]);
    for (const env of player!.played.values()) expect(env.BOT_ID).toMatch(/^[1-9][0-9]*$/);
  });
}
