import { botToken } from '../src/auth/bot-token';
import { ApiAnswer, meetings, startTestFleet, TestFleet } from './support/fleet';

/**
 * The client REST API against real Redis and FerretDB. This fleet runs the API role only, so bots stay
 * QUEUED and every answer is the API's own.
 */
let t: TestFleet;
let otherKey: string;

beforeAll(async () => {
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'sim', ADMIN_API_KEY: 'admin-key-0123456789abcdef' },
    { api: true, workers: false },
  );
  otherKey = await t.fleet.apiKeys.create('owner-b');
});
afterAll(() => t.close());

const create = (body: unknown, headers: Record<string, string> = {}, auth?: string) =>
  t.request('POST', '/api/bots', { body, headers, auth: auth ?? t.apiKey });

describe('create, read, list', () => {
  it('creates a bot with defaults and returns it without secrets', async () => {
    const res = await create({ meeting: { ...meetings.zoom, password: 'hunter2' }, metadata: { team: 'x' } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      status: 'QUEUED',
      displayName: 'Meeboter',
      meeting: { platform: 'zoom', meetingId: '123456789' },
      platform: null,
      queuePosition: expect.any(Number),
      metadata: { team: 'x' },
      endReason: null,
    });
    expect(JSON.stringify(res.body)).not.toContain('hunter2');
    const got = await t.request('GET', `/api/bots/${res.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body.id).toBe(res.body.id);
    expect(JSON.stringify(got.body)).not.toContain('hunter2');
  });

  it('makes a bot with a future joinAt SCHEDULED', async () => {
    const joinAt = new Date(Date.now() + 3600_000).toISOString();
    const res = await create({ meeting: meetings.meet, joinAt });
    expect(res.status).toBe(201);
    expect(res.body.status).toBe('SCHEDULED');
    expect(res.body.joinAt).toBe(joinAt);
  });

  it('lists newest first with cursor paging and filters', async () => {
    const mine = await t.fleet.apiKeys.create('owner-list');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create({ meeting: meetings.zoom }, {}, mine)).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: ApiAnswer = await t.request('GET', `/api/bots?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
        auth: mine,
      });
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data.map((bot: { id: string }) => bot.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    const queued = await t.request('GET', '/api/bots?status=QUEUED&limit=100', { auth: mine });
    expect(queued.body.data).toHaveLength(5);
    const ended = await t.request('GET', '/api/bots?status=ENDED', { auth: mine });
    expect(ended.body.data).toHaveLength(0);
  });

  it('returns events oldest first', async () => {
    const bot = (await create({ meeting: meetings.zoom })).body;
    await t.request('DELETE', `/api/bots/${bot.id}`);
    const events = await t.request('GET', `/api/bots/${bot.id}/events`);
    expect(events.status).toBe(200);
    const statuses = events.body.data
      .filter((e: { type: string }) => e.type === 'status')
      .map((e: { status: string }) => e.status);
    expect(statuses).toEqual(['QUEUED', 'ENDED']);
  });
});

describe('cancel and leave', () => {
  it('DELETE ends the bot CANCELLED, removes it from the queue, and is idempotent', async () => {
    const bot = (await create({ meeting: meetings.zoom })).body;
    expect(await t.fleet.placement.position(bot.id)).not.toBeNull();
    const first = await t.request('DELETE', `/api/bots/${bot.id}`);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ status: 'ENDED', endReason: 'CANCELLED', queuePosition: null });
    expect(first.body.endedAt).not.toBeNull();
    expect(await t.fleet.placement.position(bot.id)).toBeNull();
    const second = await t.request('DELETE', `/api/bots/${bot.id}`);
    expect(second.status).toBe(200);
    expect(second.body.endedAt).toBe(first.body.endedAt);
  });

  it('leave on a queued bot cancels it; leave on an ended bot is a 409', async () => {
    const bot = (await create({ meeting: meetings.zoom })).body;
    const left = await t.request('POST', `/api/bots/${bot.id}/leave`);
    expect(left.status).toBe(200);
    expect(left.body).toMatchObject({ status: 'ENDED', endReason: 'CANCELLED' });
    const again = await t.request('POST', `/api/bots/${bot.id}/leave`);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('ILLEGAL_TRANSITION');
  });

  it('leave on a live bot makes it LEAVING and tells it on its next heartbeat', async () => {
    const bot = (await create({ meeting: meetings.zoom })).body;
    const token = botToken(t.env.BOT_TOKEN_SECRET, bot.id);
    expect(
      (await t.request('POST', `/api/bots/${bot.id}/status`, { auth: token, body: { status: 'IN_CALL' } })).status,
    ).toBe(200);
    const before = await t.request('POST', `/api/bots/${bot.id}/heartbeat`, { auth: token, body: {} });
    expect(before.body).toEqual({ shouldLeave: false, logLevel: null });
    const left = await t.request('POST', `/api/bots/${bot.id}/leave`);
    expect(left.body.status).toBe('LEAVING');
    const after = await t.request('POST', `/api/bots/${bot.id}/heartbeat`, { auth: token, body: {} });
    expect(after.body).toEqual({ shouldLeave: true, logLevel: null });
    const ended = await t.request('POST', `/api/bots/${bot.id}/status`, { auth: token, body: { status: 'ENDED' } });
    expect(ended.status).toBe(200);
    expect((await t.request('GET', `/api/bots/${bot.id}`)).body).toMatchObject({ status: 'ENDED', endReason: 'LEFT' });
  });
});

describe('platforms and pool stats', () => {
  it('reports every enabled platform and the global queue', async () => {
    const res = await t.request('GET', '/api/platforms');
    expect(res.status).toBe(200);
    expect(res.body.platforms).toEqual([
      expect.objectContaining({ name: 'sim', enabled: true, limit: 1000, active: 0, queueTimeoutMs: 30000 }),
    ]);
    expect(res.body.globalQueue.length).toBeGreaterThan(0);
    expect(typeof res.body.globalQueue.oldestQueuedAt).toBe('string');
    const pool = await t.request('GET', '/api/bots/pool-stats');
    expect(pool.status).toBe(200);
    expect(pool.body).toEqual({ total: 1000, idle: 1000, busy: 0, error: 0, queueLength: res.body.globalQueue.length });
  });
});

describe('bot endpoints', () => {
  it('serve config with the meeting password to the bot itself, and 410 once it ended', async () => {
    const bot = (await create({ meeting: { ...meetings.zoom, password: 'pw' }, metadata: { 'sim.durationMs': '5' } }))
      .body;
    const token = botToken(t.env.BOT_TOKEN_SECRET, bot.id);
    const config = await t.request('GET', `/api/bots/${bot.id}/config`, {
      auth: null,
      headers: { 'x-milo-token': token },
    });
    expect(config.status).toBe(200);
    expect(config.body).toMatchObject({
      meeting: { platform: 'zoom', password: 'pw' },
      heartbeatIntervalMs: 500,
      metadata: { 'sim.durationMs': '5' },
      recording: false,
    });
    const event = await t.request('POST', `/api/bots/${bot.id}/events`, {
      auth: token,
      body: { type: 'participant.joined', data: { name: 'Ada', 'a.b': 1 } },
    });
    expect(event.status).toBe(201);
    const events = await t.request('GET', `/api/bots/${bot.id}/events`);
    expect(events.body.data.at(-1)).toMatchObject({ type: 'bot.participant.joined', data: { name: 'Ada', 'a.b': 1 } });
    await t.request('DELETE', `/api/bots/${bot.id}`);
    expect((await t.request('GET', `/api/bots/${bot.id}/config`, { auth: token })).status).toBe(410);
  });

  it("reject an API key, a forged token and another bot's token", async () => {
    const a = (await create({ meeting: meetings.zoom })).body;
    const b = (await create({ meeting: meetings.zoom })).body;
    const tokenA = botToken(t.env.BOT_TOKEN_SECRET, a.id);
    const forged = botToken('some-other-secret-0123456789', b.id);
    for (const path of ['config', 'heartbeat', 'status', 'events']) {
      const method = path === 'config' ? 'GET' : 'POST';
      const body = path === 'status' ? { status: 'IN_CALL' } : path === 'events' ? { type: 'x' } : {};
      for (const auth of [t.apiKey, forged, tokenA, null]) {
        const res = await t.request(method, `/api/bots/${b.id}/${path}`, {
          auth,
          body: method === 'POST' ? body : undefined,
        });
        expect([path, res.status]).toEqual([path, 401]);
      }
    }
    // and a bot token is not an API key
    expect((await t.request('GET', `/api/bots/${a.id}`, { auth: tokenA })).status).toBe(401);
  });
});

describe('validation', () => {
  const cases: Array<[string, unknown, string]> = [
    ['missing meeting', {}, 'meeting'],
    ['unknown meeting platform', { meeting: { platform: 'webex', url: 'https://x.y' } }, 'meeting.platform'],
    ['google meet without url', { meeting: { platform: 'google-meet' } }, 'meeting.url'],
    ['zoom without url or id', { meeting: { platform: 'zoom' } }, 'meeting.meetingId'],
    [
      'teams id without organizer',
      { meeting: { platform: 'microsoft-teams', meetingId: '1', tenantId: 't' } },
      'meeting.organizerId',
    ],
    [
      'teams id without tenant',
      { meeting: { platform: 'microsoft-teams', meetingId: '1', organizerId: 'o' } },
      'meeting.tenantId',
    ],
    ['bad meeting url', { meeting: { platform: 'google-meet', url: 'ftp://x' } }, 'meeting.url'],
    [
      'meeting url of another platform',
      { meeting: { platform: 'zoom', url: 'https://meet.google.com/abc-defg-hij' } },
      'meeting.url',
    ],
    ['meeting url of no known platform', { meeting: { url: 'https://example.com/meeting/123456789' } }, 'meeting.url'],
    ['neither platform nor url', { meeting: { meetingId: '123456789' } }, 'meeting.platform'],
    ['display name too long', { meeting: meetings.zoom, displayName: 'x'.repeat(101) }, 'displayName'],
    ['joinAt not a date', { meeting: meetings.zoom, joinAt: 'tomorrow' }, 'joinAt'],
    ['maxDurationMs negative', { meeting: meetings.zoom, maxDurationMs: -1 }, 'maxDurationMs'],
    ['recording not boolean', { meeting: meetings.zoom, recording: 'yes' }, 'recording'],
    ['automaticLeave unknown key', { meeting: meetings.zoom, automaticLeave: { foo: 1 } }, 'automaticLeave.foo'],
    [
      'automaticLeave negative',
      { meeting: meetings.zoom, automaticLeave: { waitingRoomTimeoutMs: -5 } },
      'automaticLeave.waitingRoomTimeoutMs',
    ],
    ['callbackUrl not http', { meeting: meetings.zoom, callbackUrl: 'javascript:alert(1)' }, 'callbackUrl'],
    ['metadata value not a string', { meeting: meetings.zoom, metadata: { a: 1 } }, 'metadata.a'],
    [
      'metadata over 16 values',
      { meeting: meetings.zoom, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) },
      'metadata',
    ],
    ['unknown field', { meeting: meetings.zoom, colour: 'red' }, 'colour'],
    // found by the fuzz: an empty key was reported with the path "" (test/fuzz.test.ts)
    ['an empty key', { meeting: meetings.zoom, '': {} }, '[""]'],
    [
      'a key that is not a plain name',
      { meeting: meetings.zoom, metadata: { 'sim.durationMs': 5 } },
      'metadata["sim.durationMs"]',
    ],
  ];

  it.each(cases)('%s → 400 naming %s, nothing written', async (_name, body, path) => {
    const owner = await t.fleet.apiKeys.create(`owner-validation-${path}`);
    const res = await create(body, {}, owner);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_FAILED');
    expect(res.body.error.details.map((d: { path: string }) => d.path)).toContain(path);
    expect(res.body.error.message).toContain(path);
    expect(JSON.stringify(res.body)).not.toMatch(/at .*\.(js|ts):\d+/);
    expect((await t.request('GET', '/api/bots', { auth: owner })).body.data).toHaveLength(0);
  });

  it.each([
    ['https://meet.google.com/abc-defg-hij', 'google-meet'],
    ['https://teams.live.com/meet/9876543210123?p=AbCdEf', 'microsoft-teams'],
    ['https://us02web.zoom.us/j/98765432101?pwd=x', 'zoom'],
  ])('infers the platform of %s when it is left out', async (url, platform) => {
    const res = await create({ meeting: { url } });
    expect(res.status).toBe(201);
    expect(res.body.meeting).toEqual({ platform, url });
  });

  it('answers 415 for a body that is not JSON and writes nothing', async () => {
    const owner = await t.fleet.apiKeys.create('owner-415');
    const res = await t.request('POST', '/api/bots', {
      auth: owner,
      rawBody: JSON.stringify({ meeting: meetings.zoom }),
      headers: { 'content-type': 'text/plain' },
    });
    expect(res.status).toBe(415);
    expect(res.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect((await t.request('GET', '/api/bots', { auth: owner })).body.data).toHaveLength(0);
    const vendorJson = await t.request('POST', '/api/bots', {
      auth: owner,
      rawBody: JSON.stringify({ meeting: meetings.zoom }),
      headers: { 'content-type': 'application/vnd.meeboter+json; charset=utf-8' },
    });
    expect(vendorJson.status).toBe(201);
  });

  it('rejects bad list queries and malformed JSON', async () => {
    const limit = await t.request('GET', '/api/bots?limit=1000');
    expect(limit.status).toBe(400);
    expect(limit.body.error.details[0].path).toBe('limit');
    const status = await t.request('GET', '/api/bots?status=SLEEPING');
    expect(status.body.error.details[0].path).toBe('status');
    const json = await t.request('POST', '/api/bots', { rawBody: '{"meeting":' });
    expect(json.status).toBe(400);
  });

  it('rejects illegal status values from bots with 400 and the field path', async () => {
    const bot = (await create({ meeting: meetings.zoom })).body;
    const token = botToken(t.env.BOT_TOKEN_SECRET, bot.id);
    const res = await t.request('POST', `/api/bots/${bot.id}/status`, { auth: token, body: { status: 'DEPLOYING' } });
    expect(res.status).toBe(400);
    expect(res.body.error.details[0].path).toBe('status');
  });

  it('answers 413 for a body over 64 KB and writes nothing', async () => {
    const owner = await t.fleet.apiKeys.create('owner-413');
    const res = await create(
      { meeting: meetings.zoom, displayName: 'x', metadata: { big: 'y'.repeat(70_000) } },
      {},
      owner,
    );
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    expect((await t.request('GET', '/api/bots', { auth: owner })).body.data).toHaveLength(0);
  });
});

describe('auth and isolation', () => {
  it('401 without a key or with an unknown one', async () => {
    expect((await t.request('GET', '/api/bots', { auth: null })).status).toBe(401);
    expect((await t.request('GET', '/api/bots', { auth: 'mbk_not-a-key' })).status).toBe(401);
    const viaHeader = await t.request('GET', '/api/bots', { auth: null, headers: { 'x-api-key': t.apiKey } });
    expect(viaHeader.status).toBe(200);
  });

  it("another owner's bot is a 404 on every route and absent from lists", async () => {
    const bot = (await create({ meeting: meetings.zoom })).body;
    for (const [method, path] of [
      ['GET', `/api/bots/${bot.id}`],
      ['GET', `/api/bots/${bot.id}/events`],
      ['POST', `/api/bots/${bot.id}/leave`],
      ['DELETE', `/api/bots/${bot.id}`],
    ]) {
      const res = await t.request(method, path, { auth: otherKey });
      expect([method, path, res.status]).toEqual([method, path, 404]);
    }
    const list = await t.request('GET', '/api/bots?limit=100', { auth: otherKey });
    expect(list.body.data.map((b: { id: string }) => b.id)).not.toContain(bot.id);
    expect((await t.request('GET', `/api/bots/${bot.id}`)).body.status).toBe('QUEUED');
  });

  it('404 for unknown and malformed ids', async () => {
    expect((await t.request('GET', '/api/bots/000000000000000000000000')).status).toBe(404);
    expect((await t.request('GET', '/api/bots/not-an-id')).status).toBe(404);
  });
});

describe('idempotent create', () => {
  it('same key and body → the same bot (200); different body → 409', async () => {
    const body = { meeting: meetings.zoom, displayName: 'Idem' };
    const first = await create(body, { 'idempotency-key': 'key-1' });
    expect(first.status).toBe(201);
    const again = await create(body, { 'idempotency-key': 'key-1' });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    const different = await create({ ...body, displayName: 'Other' }, { 'idempotency-key': 'key-1' });
    expect(different.status).toBe(409);
    expect(different.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    // keys are per owner
    const otherOwner = await create(body, { 'idempotency-key': 'key-1' }, otherKey);
    expect(otherOwner.status).toBe(201);
    expect(otherOwner.body.id).not.toBe(first.body.id);
  });

  it('50 concurrent identical requests create exactly one bot', async () => {
    const owner = await t.fleet.apiKeys.create('owner-concurrent');
    const body = { meeting: meetings.meet, metadata: { run: 'concurrent' } };
    const results = await Promise.all(
      Array.from({ length: 50 }, () => create(body, { 'idempotency-key': 'burst' }, owner)),
    );
    expect(results.every((r) => r.status === 200 || r.status === 201)).toBe(true);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    expect(results.filter((r) => r.status === 201).length).toBe(1);
    const stored = await t.fleet.models.Bot.countDocuments({ ownerId: 'owner-concurrent' });
    expect(stored).toBe(1);
    const queued = await t.fleet.redis.zrange(`${t.env.REDIS_PREFIX}:gq:order`, 0, -1);
    expect(queued.filter((id) => id === results[0].body.id)).toHaveLength(1);
  });
});

describe('Bull Board', () => {
  it('is behind ADMIN_API_KEY and shows every queue', async () => {
    expect((await t.request('GET', '/admin/queues', { auth: null })).status).toBe(401);
    expect((await t.request('GET', '/admin/queues', { auth: t.apiKey })).status).toBe(401);
    const basic = Buffer.from('admin:admin-key-0123456789abcdef').toString('base64');
    const page = await t.request('GET', '/admin/queues', { auth: null, headers: { authorization: `Basic ${basic}` } });
    expect(page.status).toBe(200);
    const queues = await t.request('GET', '/admin/queues/api/queues', { auth: 'admin-key-0123456789abcdef' });
    expect(queues.status).toBe(200);
    expect(queues.body.queues.map((q: { name: string }) => q.name).sort()).toEqual([
      'dispatch',
      'platform-sim',
      'reconcile-sim',
      'schedule',
      'sweeps',
      'webhooks',
    ]);
  });
});

describe('health', () => {
  it('healthz and readyz answer', async () => {
    expect((await t.request('GET', '/healthz', { auth: null })).body).toEqual({ ok: true });
    const ready = await t.request('GET', '/readyz', { auth: null });
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({
      ready: true,
      degraded: false,
      checks: { redis: 'ok', mongodb: 'ok', flusher: 'ok' },
      unflushedChanges: ready.body.unflushedChanges,
    });
    expect(Number.isInteger(ready.body.unflushedChanges)).toBe(true);
  });

  it('no stack traces and JSON 404s for unknown routes', async () => {
    const res = await t.request('GET', '/nope', { auth: null });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('NOT_FOUND');
  });
});
