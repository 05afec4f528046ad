import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import IORedis from 'ioredis';
import mongoose from 'mongoose';
import { request } from 'undici';
import { freePort } from '../src/peers';

/** Helpers for the benchmark: isolated fleets (own Redis prefix and database), processes, load, stats. */

export interface Peers {
  redisUrl: string;
  mongodbUri: string;
  /** The peers' processes, where the bench started them (their CPU is counted beside the fleet's). */
  pids: { redis?: number; mongodb?: number };
}

export interface Sample {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function summarize(runs: number[]): Sample {
  const sorted = [...runs].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1], runs };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 300_000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`benchmark timed out waiting for ${what}`);
}

export interface BenchEnv {
  env: Record<string, string>;
  prefix: string;
  url: string;
}

export async function benchEnv(peers: Peers, overrides: Record<string, string>): Promise<BenchEnv> {
  const port = await freePort();
  const prefix = `mbbench_${randomBytes(3).toString('hex')}`;
  const db = new URL(peers.mongodbUri);
  db.pathname = `/${prefix}_test`;
  const env = {
    PORT: String(port),
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    REDIS_URL: peers.redisUrl,
    MONGODB_URI: db.toString(),
    REDIS_PREFIX: prefix,
    BOT_TOKEN_SECRET: 'bench-secret-0123456789abcdef',
    BOOTSTRAP_API_KEY: 'bench-api-key-0123456789abcdef',
    LOG_LEVEL: 'error',
    PLATFORM_PRIORITY: 'sim',
    SIM_BOT_LIMIT: '100000',
    // P1 offers more creates than FerretDB lets us deploy; bots must wait in line, not time out of it
    SIM_QUEUE_TIMEOUT_MS: '3600000',
    HEARTBEAT_INTERVAL_MS: '30000',
    // one API key drives the whole load
    API_RATE_LIMIT_PER_MINUTE: '0',
    ...overrides,
  };
  return { env, prefix, url: env.PUBLIC_URL };
}

export async function dropBenchData(peers: Peers, bench: BenchEnv): Promise<void> {
  const connection = await mongoose.createConnection(bench.env.MONGODB_URI).asPromise();
  await connection.dropDatabase().catch(() => undefined);
  await connection.close();
  const redis = new IORedis(peers.redisUrl);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${bench.prefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
}

const MAIN = path.resolve(__dirname, '../src/main.js');

export interface Proc {
  child: ChildProcess;
  rssKb(): number;
  /** CPU seconds (user + system) the process has used so far. */
  cpuSeconds(): number;
  stop(): Promise<void>;
  /** SIGKILL, as a crash or an evicted pod dies: resolves once the process is gone. */
  kill(): Promise<void>;
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSecondsOf(pid: number): number {
  // /proc/<pid>/stat: fields 14 and 15 (utime, stime) in clock ticks, 100 a second on Linux; the process
  // name (field 2) may hold spaces and parentheses, so the count starts after its last ')'.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export function startProcess(
  script: string,
  args: string[],
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Proc {
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    rssKb: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    },
    cpuSeconds: () => cpuSecondsOf(child.pid!),
    stop: () => {
      if (!running()) return Promise.resolve();
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
      return exited;
    },
    kill: () => {
      if (running()) child.kill('SIGKILL');
      return exited;
    },
  };
}

export const startFleetProcess = (role: 'api' | 'worker' | 'all', bench: BenchEnv, nodeArgs: string[] = []) =>
  startProcess(MAIN, [role], role === 'worker' ? { ...bench.env, PORT: '0' } : bench.env, nodeArgs);

/**
 * A full garbage collection in a process started with `--inspect=127.0.0.1:<port>` (the inspector's
 * HeapProfiler.collectGarbage), so its RSS counts what it retains rather than garbage V8 has not collected
 * yet. Uses the global WebSocket, which Node has had without a flag since 22.
 */
export async function collectGarbage(inspectPort: number, timeoutMs = 30_000): Promise<void> {
  const list = await fetch(`http://127.0.0.1:${inspectPort}/json/list`, { signal: AbortSignal.timeout(timeoutMs) });
  const [target] = (await list.json()) as Array<{ webSocketDebuggerUrl: string }>;
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the inspector on port ${inspectPort} did not collect within ${timeoutMs} ms`)),
        timeoutMs,
      );
      socket.onopen = () => socket.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
      socket.onmessage = (message) => {
        if ((JSON.parse(String(message.data)) as { id?: number }).id === 1) resolve();
      };
      socket.onerror = () => reject(new Error(`the inspector on port ${inspectPort} failed`));
    });
  } finally {
    clearTimeout(timer);
    socket.close();
  }
}

/** `runBots: false`: containers start but run no bot (as images that never call the fleet). */
export const startSimHostProcess = (bench: BenchEnv, { runBots = true } = {}) =>
  startProcess(path.resolve(__dirname, '../scripts/sim-host.js'), [], {
    REDIS_URL: bench.env.REDIS_URL,
    SIM_HOST: bench.prefix,
    SIM_HOST_RUN_BOTS: String(runBots),
  });

export async function waitReady(url: string) {
  await waitUntil(
    async () => {
      try {
        return (await fetch(`${url}/readyz`)).ok;
      } catch {
        return false;
      }
    },
    `${url} to be ready`,
    60_000,
  );
}

/** Waits until a peer on 127.0.0.1:`port` answers a JSON POST with a 2xx. */
export async function waitAnswering(port: number, what: string) {
  await waitUntil(async () => {
    try {
      return (
        await fetch(`http://127.0.0.1:${port}/x`, {
          method: 'POST',
          body: '{}',
          headers: { 'content-type': 'application/json' },
        })
      ).ok;
    } catch {
      return false;
    }
  }, what);
}

export function bareExpressScript(): string {
  const script = path.resolve(__dirname, 'bare-express.js');
  if (!existsSync(script)) throw new Error(`missing ${script}: run npm run build`);
  return script;
}

export interface LoadResult {
  requestsPerSecond: number;
  ok: number;
  errors: number;
}

/** autocannon with a fixed shape for every HTTP figure: 1 worker, `connections` connections, `seconds` long. */
export async function load(options: {
  url: string;
  method?: 'POST' | 'GET';
  headers?: Record<string, string>;
  body?: string;
  connections?: number;
  seconds: number;
}): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    method: options.method ?? 'POST',
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.body,
    connections: options.connections ?? 50,
    duration: options.seconds,
  });
  return {
    requestsPerSecond: result.requests.average,
    ok: result['2xx'],
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

/**
 * One API call, as a client of the fleet makes it. undici's request, not fetch: the load generator shares the
 * fleet's cores, and fetch costs about twice the CPU a call. `Answer` is the shape the caller reads of the body.
 */
export async function api<Answer = unknown>(
  url: string,
  method: 'GET' | 'POST' | 'DELETE',
  route: string,
  body?: unknown,
  key = 'bench-api-key-0123456789abcdef',
) {
  const response = await request(url + route, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.statusCode, body: (await response.body.json()) as Answer };
}
