import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { ROUTES } from '../src/api/routes';
import { botToken } from '../src/auth/bot-token';
import { sweepHeartbeats } from '../workers/sweeps';
import { endedSet } from '../src/store/live-state';
import {
  ApiAnswer,
  baseEnv,
  cleanup,
  meetings,
  peerUrls,
  RequestOptions,
  spawnFleetProcess,
  startTestFleet,
  TestFleet,
  testDatabaseUri,
  uniqueName,
  waitFor,
} from './support/fleet';
import { Moto, motoS3Client, startMoto } from './support/moto';

/**
 * The abuse matrix (SECURITY.md), built from the route table so that a new route is covered as soon as it
 * exists: wrong owners, wrong credential kinds, other bots' tokens, forged, truncated and replayed tokens,
 * bodies that are not JSON, odd ids, and the admin surface. No answer may be a 5xx, and neither the answers
 * nor the logs of this whole file (this process and the fleet processes it starts) may contain a secret.
 */
jest.setTimeout(180_000);

const ADMIN_API_KEY = `admin-${randomBytes(12).toString('hex')}`;
const BOOTSTRAP_API_KEY = `boot-${randomBytes(12).toString('hex')}`;
const WEBHOOK_SECRET = `whsec-${randomBytes(12).toString('hex')}`;
const S3_SECRET_KEY = `s3sk-${randomBytes(12).toString('hex')}`;
const MEETING_PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
/** A receiver's own secret in its callbackUrl, as many webhook receivers expect. */
const CALLBACK_TOKEN = `cbtok-${randomBytes(8).toString('hex')}`;
const SECRET_ENV = {
  ADMIN_API_KEY,
  BOOTSTRAP_API_KEY,
  WEBHOOK_SECRET,
  S3_ENDPOINT: 'http://127.0.0.1:9/s3',
  S3_ACCESS_KEY: 'AKIASECURITYTEST',
  S3_SECRET_KEY,
  S3_BUCKET_NAME: 'recordings',
};

/** Every secret value this file uses, by name; bot tokens are added as bots are made. */
const secrets = new Map<string, string>(
  Object.entries({ ADMIN_API_KEY, BOOTSTRAP_API_KEY, WEBHOOK_SECRET, S3_SECRET_KEY, MEETING_PASSWORD, CALLBACK_TOKEN }),
);
const logLines: string[] = [];
const answers: Array<{ what: string; status: number; body: string }> = [];

let t: TestFleet;
let moto: Moto;
let otherKey: string;
const tokenOf = (id: string) => {
  const token = botToken(t.env.BOT_TOKEN_SECRET, id);
  secrets.set(`bot token of ${id}`, token);
  return token;
};

beforeAll(async () => {
  // moto's S3 behind this fleet, so that screenshot uploads are kept (it takes any credentials)
  moto = await startMoto();
  const s3 = motoS3Client(moto.url);
  await s3.send(new CreateBucketCommand({ Bucket: SECRET_ENV.S3_BUCKET_NAME }));
  s3.destroy();
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'sim', ...SECRET_ENV, S3_ENDPOINT: moto.url },
    { api: true, workers: false },
    { log: (line) => logLines.push(line) },
  );
  secrets.set('BOT_TOKEN_SECRET', t.env.BOT_TOKEN_SECRET);
  secrets.set('API key of owner-a', t.apiKey);
  otherKey = await t.fleet.apiKeys.create('owner-b');
  secrets.set('API key of owner-b', otherKey);
});
afterAll(async () => {
  await t?.close();
  await moto?.stop();
});

/**
 * One request, recorded for the 5xx and secret checks at the end. Plain node:http rather than fetch, which
 * refuses to send a body with GET.
 */
function call(base: string, method: string, route: string, options: RequestOptions = {}): Promise<ApiAnswer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth) headers.authorization = `Bearer ${options.auth}`;
  const multipart = options.body instanceof MultipartBody ? options.body : undefined;
  if (multipart) headers['content-type'] = `multipart/form-data; boundary=${multipart.boundary}`;
  const body = multipart
    ? multipart.bytes
    : options.body !== undefined
      ? JSON.stringify(options.body)
      : options.rawBody;
  if (body !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const req = http.request(base + route, { method, headers }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => {
        answers.push({ what: `${method} ${route.slice(0, 120)}`, status: res.statusCode!, body: text });
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : null;
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode!, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}
/** A multipart/form-data body (the screenshot upload), sent by `call` with its content type. */
class MultipartBody {
  readonly boundary = `----meeboter${randomBytes(8).toString('hex')}`;
  readonly bytes: Buffer;
  constructor(parts: Array<[name: string, value: string | Buffer, filename?: string]>) {
    const chunks = parts.flatMap(([name, value, filename]) => [
      Buffer.from(
        `--${this.boundary}\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"\r\nContent-Type: application/octet-stream` : ''}\r\n\r\n`,
      ),
      Buffer.from(value),
      Buffer.from('\r\n'),
    ]);
    this.bytes = Buffer.concat([...chunks, Buffer.from(`--${this.boundary}--\r\n`)]);
  }
}
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

const api = (method: string, route: string, options: RequestOptions = {}) =>
  call(t.url, method, route, { auth: t.apiKey, ...options });

const newBot = async (auth = t.apiKey) => {
  const res = await api('POST', '/api/bots', {
    auth,
    body: { meeting: { ...meetings.zoom, password: MEETING_PASSWORD } },
  });
  expect(res.status).toBe(201);
  return res.body.id as string;
};

/** A request each route accepts from the right caller; the table must name every route. */
const SAMPLES: Record<string, { body?: unknown }> = {
  'POST /api/bots/:id/heartbeat': {},
  'POST /api/bots/:id/status': { body: { status: 'JOINING_CALL' } },
  'GET /api/bots/:id/config': {},
  'POST /api/bots/:id/events': { body: { type: 'probe' } },
  'POST /api/bots/:id/screenshots': {
    body: new MultipartBody([
      ['file', PNG, 'screenshot.png'],
      ['type', 'manual'],
      ['state', 'IN_CALL'],
    ]),
  },
  'GET /healthz': {},
  'GET /readyz': {},
  'GET /api/platforms': {},
  'PATCH /api/platforms/:name': { body: { draining: false } },
  'GET /api/bots/pool-stats': {},
  'POST /api/bots': { body: { meeting: meetings.zoom } },
  'GET /api/bots': {},
  'GET /api/bots/:id': {},
  'DELETE /api/bots/:id': {},
  'POST /api/bots/:id/leave': {},
  'GET /api/bots/:id/events': {},
  'GET /api/bots/:id/recording': {},
  'GET /api/bots/:id/screenshots': {},
  'PATCH /api/bots/:id': { body: { logLevel: 'DEBUG' } },
  'POST /api/bots/:id/chat': { body: { message: 'probe' } },
  'GET /api/bots/:id/logs': {},
};

const routes = ROUTES.map(([method, routePath, guard, body]) => ({
  key: `${method.toUpperCase()} ${routePath}`,
  method: method.toUpperCase(),
  path: routePath,
  guard,
  takesBody: body === 'json',
  ignoresBody: body === 'none',
  sample: SAMPLES[`${method.toUpperCase()} ${routePath}`] ?? {},
  at: (id: string) => routePath.replace(':id', id).replace(':name', 'sim'),
}));
const clientRoutes = routes.filter((r) => r.guard === 'client');
const botRoutes = routes.filter((r) => r.guard === 'bot');
const adminRoutes = routes.filter((r) => r.guard === 'admin');

it('covers every route of the route table, and only those', () => {
  expect(routes.map((r) => r.key).sort()).toEqual(Object.keys(SAMPLES).sort());
  expect(new Set(routes.map((r) => r.guard))).toEqual(new Set(['none', 'client', 'bot', 'admin']));
});

describe('client routes', () => {
  it('answer 401 to no credentials, an unknown key, the admin key and any bot token', async () => {
    const owner = await t.fleet.apiKeys.create('owner-c');
    secrets.set('API key of owner-c', owner);
    const id = await newBot(owner);
    const token = tokenOf(id);
    for (const route of clientRoutes) {
      for (const [label, options] of [
        ['none', { auth: null }],
        ['unknown key', { auth: `mbk_${randomBytes(16).toString('hex')}` }],
        ['admin key', { auth: ADMIN_API_KEY }],
        ['bot token (Bearer)', { auth: token }],
        ['bot token (x-api-key)', { auth: null, headers: { 'x-api-key': token } }],
      ] as Array<[string, RequestOptions]>) {
        const res = await api(route.method, route.at(id), { ...options, body: route.sample.body });
        expect([route.key, label, res.status]).toEqual([route.key, label, 401]);
      }
    }
    expect((await api('GET', `/api/bots/${id}`, { auth: owner })).body.status).toBe('QUEUED');
    expect((await api('GET', '/api/bots?limit=100', { auth: owner })).body.data).toHaveLength(1);
  });

  it('answer 404 to another owner on every route that names a bot, and change nothing', async () => {
    const id = await newBot();
    const routesWithId = clientRoutes.filter((r) => r.path.includes(':id'));
    expect(routesWithId.length).toBeGreaterThan(0);
    for (const route of routesWithId) {
      const res = await api(route.method, route.at(id), { auth: otherKey, body: route.sample.body });
      expect([route.key, res.status]).toEqual([route.key, 404]);
    }
    expect((await api('GET', `/api/bots/${id}`)).body.status).toBe('QUEUED');
    const events = (await api('GET', `/api/bots/${id}/events`)).body.data;
    expect(events.map((e: { type: string }) => e.type)).toEqual(['status']);
  });
});

describe('bot routes', () => {
  it("answer 401 to no credentials, API keys, the admin key, another bot's token, and forged or truncated tokens", async () => {
    const a = await newBot();
    const b = await newBot();
    const tokenA = tokenOf(a);
    const tokenB = tokenOf(b);
    const forged = botToken('another-secret-0123456789abcdef', b);
    for (const route of botRoutes) {
      for (const [label, options] of [
        ['none', { auth: null }],
        ['API key of the owner', { auth: t.apiKey }],
        ['API key (x-milo-token)', { auth: null, headers: { 'x-milo-token': t.apiKey } }],
        ['admin key', { auth: ADMIN_API_KEY }],
        ['token of bot A', { auth: tokenA }],
        ['token of bot A (x-milo-token)', { auth: null, headers: { 'x-milo-token': tokenA } }],
        ['forged token', { auth: forged }],
        ['truncated token', { auth: tokenB.slice(0, -1) }],
        ['token with a character more', { auth: `${tokenB}A` }],
        ['token without its prefix', { auth: tokenB.slice(4) }],
        ['empty bearer', { auth: null, headers: { authorization: 'Bearer ' } }],
      ] as Array<[string, RequestOptions]>) {
        const res = await api(route.method, route.at(b), { ...options, body: route.sample.body });
        expect([route.key, label, res.status]).toEqual([route.key, label, 401]);
      }
    }
    expect((await api('GET', `/api/bots/${b}`)).body.status).toBe('QUEUED');
    // and the right token works on every one of them
    for (const route of botRoutes) {
      const res = await api(route.method, route.at(b), { auth: tokenB, body: route.sample.body });
      expect([route.key, res.status < 300]).toEqual([route.key, true]);
    }
  });

  it('refuse the token of a bot that has ended (410), replayed on every bot route', async () => {
    const id = await newBot();
    const token = tokenOf(id);
    expect((await api('DELETE', `/api/bots/${id}`)).body.status).toBe('ENDED');
    for (const route of botRoutes) {
      const res = await api(route.method, route.at(id), { auth: token, body: route.sample.body });
      expect([route.key, res.status, res.body.error?.code]).toEqual([route.key, 410, 'GONE']);
    }
    // a refused heartbeat records nothing
    expect(await t.fleet.liveState.lastHeartbeat(id)).toBeNull();
  });

  it('answer a heartbeat replayed after the 24 h window, which leaves nothing the heartbeat sweep keeps', async () => {
    const id = await newBot();
    const token = tokenOf(id);
    await api('DELETE', `/api/bots/${id}`);
    // as if the bot had ended 25 h ago: the next end prunes it from the ended set
    await t.fleet.redis.zadd(endedSet(t.env.REDIS_PREFIX), Date.now() - 25 * 3600_000, id);
    await api('DELETE', `/api/bots/${await newBot()}`);
    expect((await api('POST', `/api/bots/${id}/heartbeat`, { auth: token })).status).toBe(200);
    for (const route of botRoutes.filter((r) => !r.path.endsWith('/heartbeat'))) {
      expect([
        route.key,
        (await api(route.method, route.at(id), { auth: token, body: route.sample.body })).status,
      ]).toEqual([route.key, 410]);
    }
    const sweepDeps = {
      liveState: t.fleet.liveState,
      repo: t.fleet.repo,
      lifecycle: t.fleet.lifecycle,
      outbox: t.fleet.outbox,
      heartbeatTimeoutMs: 1,
      deployTimeoutMs: 1,
    };
    await sweepHeartbeats(sweepDeps, Date.now() + 1000);
    expect(await t.fleet.liveState.lastHeartbeat(id)).toBeNull();
    expect((await api('GET', `/api/bots/${id}`)).body).toMatchObject({ status: 'ENDED', endReason: 'CANCELLED' });
  });
});

describe('bodies', () => {
  const callerFor = async (route: (typeof routes)[number]) => {
    const id = await newBot();
    const auth = { bot: tokenOf(id), client: t.apiKey, admin: ADMIN_API_KEY, none: null }[route.guard];
    return { id, auth };
  };

  it('that are not JSON get 415 on every route that reads a body', async () => {
    for (const route of routes.filter((r) => r.takesBody)) {
      for (const contentType of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/xml',
      ]) {
        const { id, auth } = await callerFor(route);
        const res = await api(route.method, route.at(id), {
          auth,
          rawBody: JSON.stringify(route.sample.body),
          headers: { 'content-type': contentType },
        });
        expect([route.key, contentType, res.status, res.body.error.code]).toEqual([
          route.key,
          contentType,
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        ]);
      }
      const { id, auth } = await callerFor(route);
      const charset = await api(route.method, route.at(id), {
        auth,
        rawBody: '{}',
        headers: { 'content-type': 'application/json; charset=koi8-r' },
      });
      expect([route.key, charset.status]).toEqual([route.key, 415]);
      // an empty body is no body: the route's own validation answers
      const empty = await api(route.method, route.at(id), {
        auth,
        rawBody: '',
        headers: { 'content-type': 'text/plain' },
      });
      expect([route.key, empty.status, empty.body.error.code]).toEqual([route.key, 400, 'VALIDATION_FAILED']);
      // credentials come first: without them the type of the body is never looked at
      const anonymous = await api(route.method, route.at(id), {
        auth: null,
        rawBody: 'x',
        headers: { 'content-type': 'text/plain' },
      });
      expect([route.key, anonymous.status]).toEqual([route.key, 401]);
    }
  });

  it('are ignored, whatever they are, on every route that takes none', async () => {
    for (const route of routes.filter((r) => r.ignoresBody)) {
      const without = await callerFor(route);
      const expected = (await api(route.method, route.at(without.id), { auth: without.auth })).status;
      for (const [contentType, rawBody] of [
        ['text/plain', 'hello'],
        ['application/json', '{"not json'],
        ['application/json', JSON.stringify({ status: 'ENDED', limit: 1000 })],
      ]) {
        const { id, auth } = await callerFor(route);
        const res = await api(route.method, route.at(id), { auth, rawBody, headers: { 'content-type': contentType } });
        expect([route.key, contentType, rawBody, res.status]).toEqual([route.key, contentType, rawBody, expected]);
      }
    }
  });
});

it('odd ids are never a 5xx on any route, even with a valid token made for them', async () => {
  for (const route of routes.filter((r) => r.path.includes(':id'))) {
    for (const id of [
      '000000000000000000000000',
      'not-an-id',
      'x'.repeat(2000),
      '%E0%A4%A',
      '%00',
      encodeURIComponent('ü"\'<>'),
      '..%2F..%2Fetc',
    ]) {
      const auth = route.guard === 'bot' ? botToken(t.env.BOT_TOKEN_SECRET, decodeURIComponentSafe(id)) : t.apiKey;
      const res = await api(route.method, route.at(id), { auth, body: route.sample.body });
      expect([route.key, id, res.status < 500]).toEqual([route.key, id, true]);
    }
  }
});

function decodeURIComponentSafe(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

describe('the admin surface', () => {
  const adminPaths: Array<[string, string]> = [
    ['GET', '/admin/queues'],
    ['GET', '/admin/queues/api/queues'],
    ['GET', '/admin/queues/api/redis/stats'],
    ['PUT', '/admin/queues/api/queues/dispatch/pause'],
    ['GET', '/ui'],
    ['GET', '/ui/fleet.json'],
  ];

  it('is closed without the admin key: no credentials, API keys, bot tokens and wrong passwords are 401', async () => {
    const token = tokenOf(await newBot());
    const wrongBasic = Buffer.from(`admin:${ADMIN_API_KEY}x`).toString('base64');
    for (const [method, route] of adminPaths) {
      for (const [label, options] of [
        ['none', { auth: null }],
        ['API key', { auth: t.apiKey }],
        ['bootstrap API key', { auth: BOOTSTRAP_API_KEY }],
        ['bot token', { auth: token }],
        ['wrong basic password', { auth: null, headers: { authorization: `Basic ${wrongBasic}` } }],
      ] as Array<[string, RequestOptions]>) {
        const res = await api(method, route, options);
        expect([route, label, res.status]).toEqual([route, label, 401]);
      }
    }
    expect(await t.fleet.queues.dispatch.isPaused()).toBe(false);
    expect((await api('GET', '/admin/queues/api/queues', { auth: ADMIN_API_KEY })).status).toBe(200);
  });

  it('admin routes of the API answer 401 to anything but the admin key', async () => {
    const token = tokenOf(await newBot());
    expect(adminRoutes.length).toBeGreaterThan(0);
    for (const route of adminRoutes) {
      for (const [label, options] of [
        ['none', { auth: null }],
        ['API key', { auth: t.apiKey }],
        ['bootstrap API key', { auth: BOOTSTRAP_API_KEY }],
        ['bot token', { auth: token }],
        ['admin key with a character more', { auth: `${ADMIN_API_KEY}x` }],
      ] as Array<[string, RequestOptions]>) {
        const res = await api(route.method, route.at('x'), { ...options, body: route.sample.body });
        expect([route.key, label, res.status]).toEqual([route.key, label, 401]);
      }
      const res = await api(route.method, route.at('x'), { auth: ADMIN_API_KEY, body: route.sample.body });
      expect([route.key, res.status]).toEqual([route.key, 200]);
    }
  });

  it('is not served at all without ADMIN_API_KEY, whatever is presented', async () => {
    const bare = await startTestFleet(
      { PLATFORM_PRIORITY: 'sim' },
      { api: true, workers: false },
      { log: (line) => logLines.push(line) },
    );
    try {
      for (const [method, route] of adminPaths) {
        for (const auth of [null, ADMIN_API_KEY, bare.apiKey]) {
          const res = await call(bare.url, method, route, { auth });
          expect([route, res.status]).toEqual([route, 404]);
        }
      }
      for (const route of adminRoutes) {
        for (const auth of [null, ADMIN_API_KEY, bare.apiKey]) {
          const res = await call(bare.url, route.method, route.at('x'), { auth, body: route.sample.body });
          expect([route.key, res.status]).toEqual([route.key, 404]);
        }
      }
    } finally {
      await bare.close();
    }
  });
});

it('a whole fleet process runs bots, webhooks and refusals without a secret in its logs or answers', async () => {
  const received: string[] = [];
  const receiver = http.createServer((req, res) => {
    req.on('data', (chunk) => received.push(String(chunk)));
    req.on('end', () => res.writeHead(200).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-security-'));
  const env = await baseEnv({
    ...SECRET_ENV,
    PLATFORM_PRIORITY: 'local',
    LOCAL_RUN_DIR: runDir,
    LOG_LEVEL: 'debug',
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
    REDIS_URL: peerUrls().redisUrl,
    MONGODB_URI: testDatabaseUri(peerUrls().mongodbUri, uniqueName('meeboter_test_security')),
  });
  secrets.set('BOT_TOKEN_SECRET of the process', env.BOT_TOKEN_SECRET);
  const fleet = spawnFleetProcess('all', env);
  try {
    const base = env.PUBLIC_URL;
    await waitFor(
      async () => (await call(base, 'GET', '/readyz').catch(() => ({ status: 0 }))).status === 200,
      'the fleet process to be ready',
    );
    const auth = BOOTSTRAP_API_KEY;
    const callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook?token=${CALLBACK_TOKEN}`;
    const created = await call(base, 'POST', '/api/bots', {
      auth,
      body: {
        meeting: { ...meetings.meet, password: MEETING_PASSWORD },
        callbackUrl,
        metadata: { 'sim.durationMs': '300' },
      },
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    const token = botToken(env.BOT_TOKEN_SECRET, id);
    secrets.set(`bot token of ${id}`, token);
    await waitFor(
      async () => (await call(base, 'GET', `/api/bots/${id}`, { auth })).body.status === 'ENDED',
      'the bot to end',
    );
    await waitFor(() => received.some((body) => body.includes('"ENDED"')), 'the ENDED webhook');
    // refusals that log or answer: a replayed token, wrong keys, a refused callbackUrl, a body that is not JSON
    expect((await call(base, 'POST', `/api/bots/${id}/heartbeat`, { auth: token })).status).toBe(410);
    expect((await call(base, 'GET', '/api/bots', { auth: `${BOOTSTRAP_API_KEY}x` })).status).toBe(401);
    expect((await call(base, 'GET', '/admin/queues', { auth: BOOTSTRAP_API_KEY })).status).toBe(401);
    const refused = await call(base, 'POST', '/api/bots', {
      auth,
      body: { meeting: meetings.zoom, callbackUrl: `http://169.254.169.254/?k=${S3_SECRET_KEY}` },
    });
    expect(refused.status).toBe(400);
    const plain = await call(base, 'POST', '/api/bots', {
      auth,
      rawBody: 'meeting',
      headers: { 'content-type': 'text/plain' },
    });
    expect(plain.status).toBe(415);
  } finally {
    await fleet.kill('SIGTERM');
    receiver.closeAllConnections();
    await new Promise((resolve) => receiver.close(resolve));
    await cleanup({ redisUrl: env.REDIS_URL, mongodbUri: env.MONGODB_URI }, env.REDIS_PREFIX);
  }
  // the process and its bot processes did log, at debug level
  const processLog = fleet.output();
  const botLogs = readdirSync(runDir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => readFileSync(path.join(runDir, f), 'utf8'));
  expect(processLog).toContain('"msg":"bot ended"');
  expect(botLogs.join('').length).toBeGreaterThan(0);
  expect(logLines.length).toBeGreaterThan(0);
  const logs = [processLog, ...botLogs, ...logLines].join('\n');
  for (const [name, value] of secrets) expect([name, logs.includes(value)]).toEqual([name, false]);
});

it('/metrics is open and holds counts only: no id, key or token (its answer is scanned below)', async () => {
  const id = await newBot();
  await api('GET', `/api/bots/${id}`);
  const res = await api('GET', '/metrics', { auth: null });
  expect(res.status).toBe(200);
  expect(res.body).toContain('meeboter_http_requests_total');
  expect(res.body).not.toContain(id);
});

// the last test of the file, so it sees every answer of the others
it('answered no request of this file with a 5xx or a secret', () => {
  expect(answers.filter((a) => a.status >= 500).map((a) => `${a.what} → ${a.status}`)).toEqual([]);
  for (const [name, value] of secrets) {
    if (name === 'MEETING_PASSWORD') continue; // given to the bot itself in its config, by design
    expect([name, answers.filter((a) => a.body.includes(value)).map((a) => a.what)]).toEqual([name, []]);
  }
  expect(answers.length).toBeGreaterThan(100);
});
