import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Finding or starting the backing services for development and tests: a local redis-server and a
 * MongoDB-wire server (FerretDB with its SQLite backend) on free loopback ports. Production sets REDIS_URL
 * and MONGODB_URI and never reaches this module.
 */
export interface StartedPeer {
  url: string;
  /** What was used, for the startup line: "redis-server 127.0.0.1:41234 (started)". */
  description: string;
  /** The process started (the benchmark counts its CPU). */
  pid?: number;
  stop: () => Promise<void>;
}

/**
 * A free loopback port from below the kernel's ephemeral range. Ports from inside it (what `listen(0)` gives)
 * are also handed out as the local end of outgoing connections, so a peer stopped and started again on its
 * port could find it taken by a client socket (or by a client reconnecting to it, which on loopback can
 * connect to itself) and fail to listen. Below the range only a deliberate bind can take it; ports handed
 * out once by this process are not handed out again.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralRangeStart();
  for (let attempt = 0; low > PORTS_FROM + 100 && attempt < 50; attempt++) {
    const port = PORTS_FROM + Math.floor(Math.random() * (low - PORTS_FROM));
    if (handedOut.has(port) || WELL_KNOWN.has(port)) continue;
    handedOut.add(port); // before the await: concurrent callers never get the same port
    if (await canListen(port)) return port;
  }
  return listenOn(0);
}

const PORTS_FROM = 10000;
const handedOut = new Set<number>();
/** The embedded default's own ports (Redis, MongoDB) and the S3 endpoint tests name: expected to be free. */
const WELL_KNOWN = new Set([6379, 27017, 9000]);

/** The first port of the kernel's ephemeral range (0 where it cannot be read). */
export function ephemeralRangeStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0; // not Linux: fall back to a port the kernel picks
  }
}

async function canListen(port: number): Promise<boolean> {
  return listenOn(port).then(
    () => true,
    () => false,
  );
}

function listenOn(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address() as net.AddressInfo;
      server.close(() => resolve(bound));
    });
  });
}

export function isPortOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Looks for a binary on PATH and in Go's install directory (where scripts/provision.sh puts ferretdb). */
export function findBinary(name: string): string | undefined {
  const goBin = process.env.GOBIN ?? path.join(process.env.GOPATH ?? path.join(os.homedir(), 'go'), 'bin');
  const candidates = [...(process.env.PATH ?? '').split(path.delimiter), goBin, '/usr/bin', '/usr/local/bin'];
  for (const dir of candidates) {
    const full = path.join(dir, name);
    if (dir && existsSync(full)) return full;
  }
  return undefined;
}

async function waitForPort(port: number, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode} before listening`);
    if (await isPortOpen(port)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`${what} did not listen on 127.0.0.1:${port} within 30 s`);
}

/** Stops `child`: SIGTERM, SIGKILL after 5 s; resolves once it exited. */
export function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    });
}

/**
 * `durable`: an append-only file in `dataDir`, fsynced every second, so the embedded default keeps its queues
 * across restarts (tests run without persistence).
 */
export async function startRedis(dataDir: string, port?: number, durable = false): Promise<StartedPeer> {
  const binary = findBinary('redis-server');
  if (!binary) throw new Error('redis-server not found: install it (apt-get install redis-server) or set REDIS_URL');
  const listenPort = port ?? (await freePort());
  mkdirSync(dataDir, { recursive: true });
  const child = spawn(
    binary,
    [
      '--port',
      String(listenPort),
      '--bind',
      '127.0.0.1',
      '--dir',
      dataDir,
      '--save',
      '',
      ...(durable ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no']),
    ],
    { stdio: 'ignore' },
  );
  await waitForPort(listenPort, child, 'redis-server');
  return {
    url: `redis://127.0.0.1:${listenPort}`,
    description: `redis-server on 127.0.0.1:${listenPort}${durable ? `, append-only file in ${dataDir}` : ''} (started by meeboter)`,
    pid: child.pid,
    stop: stopper(child),
  };
}

export async function startFerretDb(dataDir: string, port?: number): Promise<StartedPeer> {
  const binary = findBinary('ferretdb');
  if (!binary) {
    // Our build carries a patch (scripts/ferretdb.patch) that a plain `go install` of the module lacks.
    throw new Error('ferretdb not found: run `bash scripts/provision.sh` (it builds our FerretDB) or set MONGODB_URI');
  }
  const listenPort = port ?? (await freePort());
  mkdirSync(dataDir, { recursive: true });
  const child = spawn(
    binary,
    [
      '--handler=sqlite',
      `--sqlite-url=file:${dataDir}/`,
      `--listen-addr=127.0.0.1:${listenPort}`,
      `--state-dir=${dataDir}`,
      '--debug-addr=-',
      '--telemetry=disable',
      '--log-level=error',
    ],
    { stdio: 'ignore' },
  );
  await waitForPort(listenPort, child, 'ferretdb');
  return {
    url: `mongodb://127.0.0.1:${listenPort}/meeboter`,
    description: `FerretDB (SQLite in ${dataDir}) on 127.0.0.1:${listenPort} (started by meeboter)`,
    pid: child.pid,
    stop: stopper(child),
  };
}

/** Starts a redis-server and a FerretDB under `baseDir` for whichever URL is not given. */
export async function startMissingPeers(
  baseDir: string,
  given: { redisUrl?: string; mongodbUri?: string },
): Promise<{ redisUrl: string; mongodbUri: string; started: StartedPeer[] }> {
  const started: StartedPeer[] = [];
  let redisUrl = given.redisUrl;
  if (!redisUrl) {
    const redis = await startRedis(path.join(baseDir, 'redis'));
    started.push(redis);
    redisUrl = redis.url;
  }
  let mongodbUri = given.mongodbUri;
  if (!mongodbUri) {
    const ferret = await startFerretDb(path.join(baseDir, 'ferretdb'));
    started.push(ferret);
    mongodbUri = ferret.url;
  }
  return { redisUrl, mongodbUri, started };
}
