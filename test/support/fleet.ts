import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import IORedis from 'ioredis';
import mongoose from 'mongoose';
import { loadConfig } from '../../src/config';
import { Fleet, FleetRoles, startFleet } from '../../src/fleet';
import { createLogger, setLogger } from '../../src/logger';
import { freePort } from '../../src/peers';
import { PEERS_ENV, PEERS_FILE, PeerUrls } from './peers-file';

/** Test helpers: a fleet per test file on its own Redis prefix and database, plus HTTP and wait helpers. */

export function peerUrls(): PeerUrls {
  return JSON.parse(readFileSync(process.env[PEERS_ENV] ?? PEERS_FILE, 'utf8'));
}

export function uniqueName(label: string): string {
  return `${label}_${randomBytes(4).toString('hex')}`;
}

/** A database URI on the shared server whose name always contains "test" (refused otherwise). */
export function testDatabaseUri(mongodbUri: string, dbName: string): string {
  if (!dbName.includes('test')) throw new Error(`refusing to use database "${dbName}" without "test" in its name`);
  const url = new URL(mongodbUri);
  url.pathname = `/${dbName}`;
  return url.toString();
}

/**
 * A JSON body as JSON.parse reads it. Tests read the API's answers and the peers' wire bodies untyped and assert
 * on their shape: the assertions are the check.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the one untyped JSON type, reused by every test
export type UntypedJson = any;

/** An answer of the API: its status and its parsed body (the text when it is not JSON). */
export interface ApiAnswer {
  status: number;
  body: UntypedJson;
}

export interface TestFleet {
  fleet: Fleet;
  url: string;
  env: Record<string, string>;
  urls: PeerUrls;
  apiKey: string;
  request(method: string, path: string, options?: RequestOptions): Promise<ApiAnswer>;
  close(): Promise<void>;
}

export interface RequestOptions {
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
  /** API key or bot token; defaults to the fleet's API key. Pass null for no credentials. */
  auth?: string | null;
}

export async function baseEnv(overrides: Record<string, string> = {}): Promise<Record<string, string>> {
  const port = await freePort();
  return {
    PORT: String(port),
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    REDIS_PREFIX: uniqueName('mbtest'),
    BOT_TOKEN_SECRET: 'test-secret-0123456789abcdef',
    LOG_LEVEL: 'warn',
    PLATFORM_PRIORITY: 'sim',
    HEARTBEAT_INTERVAL_MS: '500',
    // Tests poll hard; test/rate-limit.test.ts sets its own limit.
    API_RATE_LIMIT_PER_MINUTE: '0',
    ...overrides,
  };
}

export interface TestFleetOptions {
  /** Receives every log line of this process, at debug level (for tests that read the logs). */
  log?: (line: string) => void;
}

export async function startTestFleet(
  overrides: Record<string, string> = {},
  roles: FleetRoles = { api: true, workers: true },
  options: TestFleetOptions = {},
): Promise<TestFleet> {
  const peers = peerUrls();
  const env = await baseEnv(overrides);
  const dbName = overrides.__DB ?? uniqueName('meeboter_test');
  const urls = {
    redisUrl: env.REDIS_URL ?? peers.redisUrl,
    mongodbUri: testDatabaseUri(env.MONGODB_URI ?? peers.mongodbUri, dbName),
  };
  env.REDIS_URL = urls.redisUrl;
  env.MONGODB_URI = urls.mongodbUri;
  setLogger(
    options.log
      ? createLogger({ level: 'debug', write: options.log })
      : createLogger({ level: (process.env.TEST_LOG_LEVEL as 'warn') ?? 'warn' }),
  );
  const fleet = await startFleet(loadConfig(env), { redis: urls.redisUrl, mongodbUri: urls.mongodbUri }, roles);
  const apiKey = await fleet.apiKeys.create('owner-a');
  const url = `http://127.0.0.1:${fleet.port ?? env.PORT}`;
  return {
    fleet,
    url,
    env,
    urls,
    apiKey,
    request: (method, route, options = {}) => httpRequest(url, method, route, { auth: apiKey, ...options }),
    async close() {
      await fleet.shutdown.close();
      await cleanup(urls, env.REDIS_PREFIX);
    },
  };
}

export async function httpRequest(
  base: string,
  method: string,
  route: string,
  options: RequestOptions = {},
): Promise<ApiAnswer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth) headers.authorization = `Bearer ${options.auth}`;
  let body: string | undefined = options.rawBody;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  } else if (body !== undefined) headers['content-type'] ??= 'application/json';
  const response = await fetch(base + route, { method, headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed };
}

/** Drops the test database and every Redis key under the prefix. */
export async function cleanup(urls: PeerUrls, prefix: string): Promise<void> {
  const connection = await mongoose.createConnection(urls.mongodbUri).asPromise();
  await connection.dropDatabase().catch(() => undefined);
  await connection.close();
  const redis = new IORedis(urls.redisUrl);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
}

export async function waitFor<T>(
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  what: string,
  timeoutMs = 60_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError}` : ''}`);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fleet process of its own (`node dist/src/main.js <role>`), for multi-process and SIGKILL tests. */
export interface FleetProcess {
  child: ChildProcess;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** The built fleet: beside this file's tree when it runs from dist/ (the chaos run), else in dist/ (jest). */
const FLEET_MAIN =
  ['../../dist/src/main.js', '../../src/main.js']
    .map((relative) => path.resolve(__dirname, relative))
    .find((candidate) => existsSync(candidate)) ?? path.resolve(__dirname, '../../dist/src/main.js');

export function spawnFleetProcess(
  role: 'all' | 'api' | 'worker',
  env: Record<string, string>,
  cwd?: string,
): FleetProcess {
  let output = '';
  const child = spawn(process.execPath, [FLEET_MAIN, role], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  return {
    child,
    output: () => output,
    // A process that does not exit after its graceful deadline (stopped, or stuck on a peer that is gone)
    // is killed, so a failed test never leaves it behind for the next file.
    kill: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
        if (signal !== 'SIGKILL') setTimeout(() => child.kill('SIGKILL'), 45_000).unref();
      }),
  };
}

/**
 * Runs `act` with `worker` paused (SIGSTOP), so that other workers take what it would: for a moment well
 * within its lock, and never while a dispatcher run is active, which may be the paused worker's and would then
 * hold the dispatcher until its lock expired.
 */
export async function whilePaused<T>(t: TestFleet, worker: FleetProcess, act: () => Promise<T>): Promise<T> {
  await waitFor(async () => {
    worker.child.kill('SIGSTOP');
    if ((await t.fleet.queues.dispatch.getActiveCount()) === 0) return true;
    worker.child.kill('SIGCONT');
    return false;
  }, 'a moment with no dispatcher run active, to pause a worker in');
  try {
    return await act();
  } finally {
    worker.child.kill('SIGCONT');
  }
}

/** The process id in a `local` deployment identifier (`<pid>@<host>`). */
export const pidOf = (identifier: string) => Number(identifier.split('@')[0]);

export const meetings = {
  zoom: { platform: 'zoom', meetingId: '123456789' },
  meet: { platform: 'google-meet', url: 'https://meet.google.com/abc-defg-hij' },
};

/** A bot in a zoom meeting whose sim bot (on `local`) stays 60 s in the call; returns its id. */
export async function createBot(t: TestFleet, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await t.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '60000' }, ...extra },
  });
  if (res.status !== 201) throw new Error(`POST /api/bots answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}

/** A bot as its client sees it. */
export const botOf = async (t: TestFleet, id: string) => (await t.request('GET', `/api/bots/${id}`)).body;
export const eventsOf = async (t: TestFleet, id: string) =>
  (await t.request('GET', `/api/bots/${id}/events`)).body.data as UntypedJson[];
/** Its placement attempts, as `attempt.<what>:<platform>`. */
export const attemptsOf = async (t: TestFleet, id: string) =>
  (await eventsOf(t, id)).filter((e) => e.type.startsWith('attempt.')).map((e) => `${e.type}:${e.data.platform}`);
export const waitForStatus = (t: TestFleet, id: string, statuses: string[], timeoutMs = 120_000) =>
  waitFor(
    async () => {
      const current = await botOf(t, id);
      return statuses.includes(current.status) ? current : null;
    },
    `bot ${id} to reach ${statuses.join('/')}`,
    timeoutMs,
  );

/**
 * MongoDB holds each bot as the API shows it (status, end reason), and the bot's status history went through
 * the call: once the flusher caught up after MongoDB was away.
 */
export async function expectStoredAsShown(t: TestFleet, ids: string[]): Promise<void> {
  for (const id of ids) {
    const shown = await botOf(t, id);
    const stored = (await t.fleet.models.Bot.findById(id).lean())!;
    expect({ id, status: stored.status, endReason: stored.endReason ?? null }).toEqual({
      id,
      status: shown.status,
      endReason: shown.endReason,
    });
    const history = (await eventsOf(t, id))
      .filter((event) => event.type === 'status')
      .map((event) => event.status as string);
    expect(history.slice(0, 4)).toEqual(['QUEUED', 'DEPLOYING', 'JOINING_CALL', 'IN_CALL']);
    expect(history[history.length - 1]).toBe(shown.status);
  }
}
