import path from 'node:path';
import { TRPCClientError } from '@trpc/client';
import { botToken } from '../src/auth/bot-token';
import { MAX_CALLS_PER_REQUEST } from '../src/api/trpc/trpc-middleware';
import { LOG_BOUNDS } from '../src/store/bot-logs';
import { meetings, startTestFleet, TestFleet, UntypedJson } from './support/fleet';
import { HEARTBEAT_TIMEOUT_MS, livesThroughTrpc, SHORT_DEADLINES } from './support/upstream-life';
import { imageClient } from './support/upstream-bot';

/**
 * The upstream bot protocol (tRPC at /api/trpc) as the prebuilt bot images speak it: a stand-in image (built
 * with the same client, link, transformer and header) lives its whole life as a `local` process; every
 * procedure refuses what it must, and logs stay within their bound.
 */
const STANDIN = path.resolve(__dirname, '../dist/test/support/upstream-bot.js');

let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet({
    PLATFORM_PRIORITY: 'local',
    LOCAL_BOT_COMMAND: `STANDIN_HEARTBEAT_MS=300 STANDIN_CHAT_POLL_MS=200 STANDIN_IN_CALL_MS=1500 exec ${process.execPath} ${STANDIN}`,
    ...SHORT_DEADLINES,
    S3_BUCKET_NAME: 'recordings',
    S3_ENDPOINT: 'http://127.0.0.1:9',
    S3_ACCESS_KEY: 'test',
    S3_SECRET_KEY: 'test-secret',
  });
});
afterAll(() => t.close());

const create = async (displayName: string, extra: Record<string, unknown> = {}) => {
  const res = await t.request('POST', '/api/bots', { body: { meeting: meetings.meet, displayName, ...extra } });
  expect(res.status).toBe(201);
  return res.body as { id: string; number: number };
};
const tokenOf = (bot: { id: string; number: number }) => botToken(t.env.BOT_TOKEN_SECRET, bot.id, bot.number);
const logsOf = async (ref: string | number, query = '') =>
  (await t.request('GET', `/api/bots/${ref}/logs${query}`)).body;

/** The error a call answered, as the images see it (they read only the body). */
async function refusal(call: () => Promise<unknown>): Promise<{ code: string; httpStatus: number; message: string }> {
  try {
    await call();
  } catch (error) {
    if (!(error instanceof TRPCClientError)) throw error;
    const data = error.data as { code: string; httpStatus: number };
    return { code: data.code, httpStatus: data.httpStatus, message: error.message };
  }
  throw new Error('the call was answered');
}

describe('a bot image on local, through tRPC', () => {
  it('gets its config, keeps itself alive, reports its way IN_CALL, takes chat once, logs in batches, leaves when told, ends DONE or FATAL, and is refused once ended', async () => {
    const { done } = await livesThroughTrpc(t, meetings.meet, HEARTBEAT_TIMEOUT_MS);
    // DONE's recording key makes the recording link work
    const recording = await t.request('GET', `/api/bots/${done.number}/recording`);
    expect(recording.status).toBe(200);
    expect(recording.body.url).toContain(`bots/${done.number}/recordings/`);
  });

  it('answers a batch of a heartbeat and a log stream in one request, with the log level the owner set', async () => {
    const bot = await create('table', { joinAt: new Date(Date.now() + 3600_000).toISOString() });
    await t.fleet.repo.update(bot.id, { status: 'IN_CALL' });
    expect((await t.request('PATCH', `/api/bots/${bot.number}`, { body: { logLevel: 'DEBUG' } })).body.logLevel).toBe(
      'DEBUG',
    );
    const client = imageClient(t.env.PUBLIC_URL, tokenOf(bot));
    const entry = {
      id: 'e1',
      botId: bot.number,
      timestamp: new Date(),
      level: 'INFO' as const,
      message: 'hi',
      context: null,
    };
    const [beat, streamed] = await Promise.all([
      client.bots.sendHeartbeat.mutate({ id: String(bot.number) as unknown as number }),
      client.bots.logs.stream.mutate({ botId: String(bot.number) as unknown as number, entries: [entry] }),
    ]);
    expect(beat).toEqual({ shouldLeave: false, logLevel: 'DEBUG' });
    expect(streamed).toMatchObject({ received: 1 });
    expect((await logsOf(bot.id)).data).toEqual([
      expect.objectContaining({ message: 'hi', timestamp: entry.timestamp.toISOString() }),
    ]);
    // once it ended, its level is not kept (nothing would ever forget it)
    expect((await t.request('DELETE', `/api/bots/${bot.id}`)).body.status).toBe('ENDED');
    const late = await t.request('PATCH', `/api/bots/${bot.id}`, { body: { logLevel: 'TRACE' } });
    expect([late.status, late.body.error.code]).toEqual([410, 'GONE']);
  });
});

describe('chat', () => {
  it('gives each message once, in the order sent, null when none; at most 100 wait; none for an ended bot', async () => {
    const bot = await create('chat', { joinAt: new Date(Date.now() + 3600_000).toISOString() });
    await t.fleet.repo.update(bot.id, { status: 'IN_CALL' });
    const client = imageClient(t.env.PUBLIC_URL, tokenOf(bot));
    expect(await client.bots.chat.dequeueMessage.query({ botId: bot.number })).toBeNull();
    for (let i = 0; i < 100; i++)
      expect((await t.request('POST', `/api/bots/${bot.id}/chat`, { body: { message: `m${i}` } })).status).toBe(202);
    const over = await t.request('POST', `/api/bots/${bot.id}/chat`, { body: { message: 'one too many' } });
    expect([over.status, over.body.error.code]).toEqual([409, 'CONFLICT']);
    expect((await t.request('POST', `/api/bots/${bot.id}/chat`, { body: {} })).status).toBe(400);
    const taken: string[] = [];
    for (let i = 0; i < 100; i++)
      taken.push((await client.bots.chat.dequeueMessage.query({ botId: bot.number }))!.messageText);
    expect(taken).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
    expect(await client.bots.chat.dequeueMessage.query({ botId: bot.number })).toBeNull();
    await t.request('DELETE', `/api/bots/${bot.id}`);
    expect((await t.request('POST', `/api/bots/${bot.id}/chat`, { body: { message: 'too late' } })).status).toBe(410);
  });
});

describe('every procedure refuses what it must', () => {
  type Client = ReturnType<typeof imageClient>;
  const calls: Array<[string, (client: Client, number: number) => Promise<unknown>]> = [
    ['bots.getConfig', (c, n) => c.bots.getConfig.query({ botId: n })],
    ['bots.sendHeartbeat', (c, n) => c.bots.sendHeartbeat.mutate({ id: n })],
    [
      'bots.events.report',
      (c, n) =>
        c.bots.events.report.mutate({
          id: n,
          event: { eventType: 'PARTICIPANT_JOIN', eventTime: new Date(), data: { participantId: 'p1' } },
        }),
    ],
    ['bots.updateStatus', (c, n) => c.bots.updateStatus.mutate({ id: n, status: 'IN_CALL' })],
    ['bots.chat.dequeueMessage', (c, n) => c.bots.chat.dequeueMessage.query({ botId: n })],
    [
      'bots.logs.stream',
      (c, n) =>
        c.bots.logs.stream.mutate({
          botId: n,
          entries: [{ id: 'x', botId: n, timestamp: new Date(), level: 'WARN', message: 'm' }],
        }),
    ],
    ['bots.logs.flush', (c, n) => c.bots.logs.flush.mutate({ botId: n })],
  ];
  const malformed: Record<string, (client: Client) => Promise<unknown>> = {
    'bots.getConfig': (c) => c.bots.getConfig.query({ botId: 'NaN' as unknown as number }),
    'bots.sendHeartbeat': (c) => c.bots.sendHeartbeat.mutate({} as never),
    'bots.events.report': (c) =>
      c.bots.events.report.mutate({ id: 1, event: { eventType: 'NOPE', eventTime: 'yesterday' } } as never),
    'bots.updateStatus': (c) => c.bots.updateStatus.mutate({ id: 1, status: 'DANCING' } as never),
    'bots.chat.dequeueMessage': (c) => c.bots.chat.dequeueMessage.query({ botId: -3 }),
    'bots.logs.stream': (c) => c.bots.logs.stream.mutate({ botId: 1, entries: [{ level: 'LOUD' }] } as never),
    'bots.logs.flush': (c) => c.bots.logs.flush.mutate({ botId: Number.NaN }),
  };

  let mine: { id: string; number: number };
  let other: { id: string; number: number };
  let ended: { id: string; number: number };
  const later = () => ({ joinAt: new Date(Date.now() + 3600_000).toISOString() });
  /** Everything a call could change: status, events, logs, waiting chat messages, heartbeat. */
  const stateOf = async (bot: { id: string }) => {
    const doc = (await t.fleet.repo.findById(bot.id))!;
    return {
      status: doc.status,
      statusVersion: doc.statusVersion,
      events: (await t.fleet.repo.events(bot.id, 1000)).length,
      logs: (await logsOf(bot.id)).data.length,
      chat: await t.fleet.redis.llen(`${t.env.REDIS_PREFIX}:chat:${bot.id}`),
      heartbeat: await t.fleet.liveState.lastHeartbeat(bot.id),
    };
  };
  beforeAll(async () => {
    mine = await create('table', later());
    other = await create('table', later());
    ended = await create('table', later());
    await t.fleet.repo.update(mine.id, { status: 'IN_CALL' });
    await t.fleet.repo.update(other.id, { status: 'IN_CALL' });
    expect((await t.request('DELETE', `/api/bots/${ended.id}`)).body.status).toBe('ENDED');
    for (const bot of [mine, other])
      expect((await t.request('POST', `/api/bots/${bot.id}/chat`, { body: { message: 'waiting' } })).status).toBe(202);
  });

  const cases: Array<[string, () => Client, () => number, string]> = [
    ['no token', () => imageClient(t.env.PUBLIC_URL, ''), () => mine.number, 'UNAUTHORIZED'],
    ["another bot's token", () => imageClient(t.env.PUBLIC_URL, tokenOf(other)), () => mine.number, 'FORBIDDEN'],
    [
      'a forged token',
      () => imageClient(t.env.PUBLIC_URL, botToken('some-other-secret-0123456789', mine.id, mine.number)),
      () => mine.number,
      'UNAUTHORIZED',
    ],
    [
      "an ended bot's token",
      () => imageClient(t.env.PUBLIC_URL, tokenOf(ended)),
      () => ended.number,
      'PRECONDITION_FAILED',
    ],
  ];
  it.each(
    calls.flatMap(([name, call]) =>
      cases.map(([who, client, number, code]) => [name, who, call, client, number, code] as const),
    ),
  )('%s with %s', async (_name, _who, call, client, number, code) => {
    const before = [await stateOf(mine), await stateOf(other)];
    const answer = await refusal(() => call(client(), number()));
    expect(answer.code).toBe(code);
    expect(answer.httpStatus).toBeLessThan(500);
    if (code === 'PRECONDITION_FAILED') expect(answer.message).toContain('PRECONDITION_FAILED');
    expect([await stateOf(mine), await stateOf(other)]).toEqual(before);
  });

  it.each(Object.entries(malformed))('%s with malformed input is BAD_REQUEST', async (_name, call) => {
    const before = await stateOf(mine);
    const answer = await refusal(() => call(imageClient(t.env.PUBLIC_URL, tokenOf(mine))));
    expect(answer).toMatchObject({ code: 'BAD_REQUEST', httpStatus: 400 });
    expect(await stateOf(mine)).toEqual(before);
  });

  it('an unknown procedure is NOT_FOUND', async () => {
    const client = imageClient(t.env.PUBLIC_URL, tokenOf(mine)) as UntypedJson;
    expect(await refusal(() => client.bots.pool.getSlot.query({ poolSlotUuid: 'x' }))).toMatchObject({
      code: 'NOT_FOUND',
      httpStatus: 404,
    });
  });

  it(`a request of more than ${MAX_CALLS_PER_REQUEST} calls is refused whole, none of them run`, async () => {
    const before = await stateOf(mine);
    const calls = MAX_CALLS_PER_REQUEST + 1;
    const input = Object.fromEntries(
      Array.from({ length: calls }, (_, i) => [
        i,
        {
          json: {
            id: String(mine.number),
            event: { eventType: 'LOG', eventTime: new Date().toISOString(), data: null },
          },
        },
      ]),
    );
    const answer = await fetch(
      `${t.env.PUBLIC_URL}/api/trpc/${Array.from({ length: calls }, () => 'bots.events.report').join(',')}?batch=1`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-milo-token': tokenOf(mine) },
        body: JSON.stringify(input),
      },
    );
    expect(answer.status).toBe(400);
    expect(await stateOf(mine)).toEqual(before);
    // a batch within the bound runs
    const within = await fetch(
      `${t.env.PUBLIC_URL}/api/trpc/${Array.from({ length: 2 }, () => 'bots.sendHeartbeat').join(',')}?batch=1`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-milo-token': tokenOf(mine) },
        body: JSON.stringify({ 0: { json: { id: String(mine.number) } }, 1: { json: { id: String(mine.number) } } }),
      },
    );
    expect(within.status).toBe(200);
  });

  it("a batch mixing bots is refused item by item: the caller's own call is answered", async () => {
    const client = imageClient(t.env.PUBLIC_URL, tokenOf(mine));
    const [own, theirs] = await Promise.allSettled([
      client.bots.sendHeartbeat.mutate({ id: mine.number }),
      client.bots.logs.stream.mutate({
        botId: other.number,
        entries: [{ id: 'y', botId: other.number, timestamp: new Date(), level: 'INFO', message: 'not mine' }],
      }),
    ]);
    expect(own).toMatchObject({ status: 'fulfilled', value: { shouldLeave: false } });
    expect(theirs.status).toBe('rejected');
    expect(((theirs as PromiseRejectedResult).reason as TRPCClientError<never>).data).toMatchObject({
      code: 'FORBIDDEN',
    });
    expect((await logsOf(other.id)).data).toHaveLength(0);
  });

  it('getSlot without a pool platform is NOT_FOUND', async () => {
    const client = imageClient(t.env.PUBLIC_URL, tokenOf(mine));
    expect(
      await refusal(() => client.infrastructure.coolify.pool.getSlot.query({ poolSlotUuid: 'nope' })),
    ).toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('logs', () => {
  it(`keep the newest ${LOG_BOUNDS.entries} entries a bot and say how many gave way`, async () => {
    const bot = await create('logs', { joinAt: new Date(Date.now() + 3600_000).toISOString() });
    await t.fleet.repo.update(bot.id, { status: 'IN_CALL' });
    const client = imageClient(t.env.PUBLIC_URL, tokenOf(bot));
    const total = LOG_BOUNDS.entries + 700;
    let dropped = 0;
    for (let from = 0; from < total; from += 500) {
      const entries = Array.from({ length: Math.min(500, total - from) }, (_, i) => ({
        id: `e${from + i}`,
        botId: bot.number,
        timestamp: new Date(),
        level: (from + i) % 2 ? ('WARN' as const) : ('INFO' as const),
        message: `entry ${from + i}`,
      }));
      dropped += ((await client.bots.logs.stream.mutate({ botId: bot.number, entries })) as { dropped: number })
        .dropped;
    }
    expect(dropped).toBe(700);
    const pages: UntypedJson[] = [];
    let cursor: string | null = null;
    do {
      const page: UntypedJson = await logsOf(bot.id, `?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.dropped).toBe(700);
      pages.push(...page.data);
      cursor = page.nextCursor;
    } while (cursor);
    expect(pages).toHaveLength(LOG_BOUNDS.entries);
    expect(pages[0].message).toBe('entry 700');
    expect(pages[pages.length - 1].message).toBe(`entry ${total - 1}`);
    // a cursor Redis could not take is the caller's mistake
    expect((await t.request('GET', `/api/bots/${bot.id}/logs?cursor=1-99999999999999999999`)).status).toBe(400);
    const warnings = (await logsOf(bot.id, '?level=WARN&limit=10')).data;
    expect(warnings.map((entry: { message: string }) => entry.message)).toEqual(
      Array.from({ length: 10 }, (_, i) => `entry ${701 + 2 * i}`),
    );
  });

  it(`keep at most ${LOG_BOUNDS.bytes} bytes a bot, the newest`, async () => {
    const bot = await create('logs', { joinAt: new Date(Date.now() + 3600_000).toISOString() });
    await t.fleet.repo.update(bot.id, { status: 'IN_CALL' });
    const client = imageClient(t.env.PUBLIC_URL, tokenOf(bot));
    const big = 'x'.repeat(16_000);
    for (let batch = 0; batch < 4; batch++) {
      const entries = Array.from({ length: 50 }, (_, i) => ({
        id: `b${batch * 50 + i}`,
        botId: bot.number,
        timestamp: new Date(),
        level: 'INFO' as const,
        message: `${batch * 50 + i} ${big}`,
      }));
      await client.bots.logs.stream.mutate({ botId: bot.number, entries });
    }
    const page = await logsOf(bot.id, '?limit=1000');
    const bytes = page.data.reduce(
      (sum: number, { seq: _seq, ...entry }: { seq: string }) => sum + JSON.stringify(entry).length,
      0,
    );
    expect(bytes).toBeLessThanOrEqual(LOG_BOUNDS.bytes);
    expect(page.dropped).toBe(200 - page.data.length);
    expect(page.dropped).toBeGreaterThan(0);
    expect(page.data[page.data.length - 1].message.startsWith('199 ')).toBe(true);
  });
});
