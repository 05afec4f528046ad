import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import { findBinary, freePort, isPortOpen } from '../../src/peers';

/**
 * Redis with high availability as production runs it, on loopback: a primary and one replica, both with
 * their append-only file, watched by three sentinels (quorum 2) that fail over to the replica when the
 * primary stops answering. Sentinel is `redis-server --sentinel`, so nothing beyond redis-server is needed.
 *
 * Replication is asynchronous, as in production: `cutReplication()` makes the replica miss the primary's
 * next writes, so that a failover after it loses them (deterministically, instead of by the millisecond a
 * write happens to be in flight). The replica authenticates to its primary as its own ACL user, which the
 * cut disables.
 *
 * ```ts
 * const ha = await startRedisSentinel();
 * spawnFleetProcess('api', { ...env, ...ha.env });        // REDIS_SENTINELS, REDIS_SENTINEL_NAME
 * const old = await ha.killPrimary();                     // SIGKILL
 * const now = await ha.failedOver(old);                   // the replica, promoted
 * await ha.restartKilled();                               // comes back on its AOF; the sentinels make it a replica
 * await ha.close();
 * ```
 */
export interface RedisAddress {
  host: string;
  port: number;
  /** `redis://host:port`, for a plain client of the test's own. */
  url: string;
}

export interface RedisSentinelOptions {
  /** Where the servers' and sentinels' files go; a new temporary directory by default (removed by close). */
  dir?: string;
  /** How long the primary must not answer before a sentinel thinks it down (`down-after-milliseconds`). Default 2000. */
  downAfterMs?: number;
  /** Sentinel's `failover-timeout`. Default 10000. */
  failoverTimeoutMs?: number;
}

export interface RedisSentinelSet {
  /** The primary's name in Sentinel. */
  name: string;
  /** The fleet's configuration for it: `REDIS_SENTINELS` (the three sentinels) and `REDIS_SENTINEL_NAME`. */
  env: { REDIS_SENTINELS: string; REDIS_SENTINEL_NAME: string };
  /** The primary as the first sentinel that answers names it now. */
  primary(): Promise<RedisAddress>;
  /** The replicas a sentinel knows of (also one whose link to the primary is down). */
  replicas(): Promise<RedisAddress[]>;
  /** Until the next failover, the replica receives none of the primary's writes (its link is cut, its login refused). */
  cutReplication(): Promise<void>;
  /** SIGKILLs the current primary's process; its address. */
  killPrimary(): Promise<RedisAddress>;
  /** Waits until the sentinels name a primary other than `from` and it answers as a primary; that one. */
  failedOver(from: RedisAddress, timeoutMs?: number): Promise<RedisAddress>;
  /** Starts the killed server again, on its port and append-only file; the sentinels turn it into a replica. */
  restartKilled(): Promise<void>;
  /** Stops every process and removes the temporary directory it made. */
  close(): Promise<void>;
}

const NAME = 'meeboter-test';
const REPLICATION_USER = 'replicator';
const REPLICATION_PASSWORD = 'replication-secret-0123';

interface Server {
  port: number;
  conf: string;
  child?: ChildProcess;
}

const address = (host: string, port: number): RedisAddress => ({ host, port, url: `redis://${host}:${port}` });

function run(binary: string, args: string[], what: string, port: number): Promise<ChildProcess> {
  const child = spawn(binary, args, { stdio: 'ignore' });
  return (async () => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode} before listening`);
      if (await isPortOpen(port)) return child;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    child.kill('SIGKILL');
    throw new Error(`${what} did not listen on 127.0.0.1:${port} within 30 s`);
  })();
}

function stop(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/** One command on a short-lived connection that does not retry (a server may be gone). */
async function ask<T>(port: number, ...command: Array<string | number>): Promise<T> {
  const client = new IORedis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.call(String(command[0]), ...command.slice(1))) as T;
  } finally {
    client.disconnect();
  }
}

export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinelSet> {
  const binary = findBinary('redis-server');
  if (!binary) throw new Error('redis-server not found: install it (apt-get install redis-server)');
  const madeDir = !options.dir;
  const dir = options.dir ?? mkdtempSync(path.join(os.tmpdir(), 'meeboter-sentinel-'));
  const downAfterMs = options.downAfterMs ?? 2000;
  const failoverTimeoutMs = options.failoverTimeoutMs ?? 10_000;

  const servers: Server[] = [];
  for (const role of ['primary', 'replica']) {
    const port = await freePort();
    const serverDir = path.join(dir, `redis-${port}`);
    mkdirSync(serverDir, { recursive: true });
    const conf = path.join(serverDir, 'redis.conf');
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${serverDir}`,
        'save ""',
        'appendonly yes',
        'appendfsync everysec',
        'user default on nopass ~* &* +@all',
        `user ${REPLICATION_USER} on >${REPLICATION_PASSWORD} +psync +replconf +ping`,
        `masteruser ${REPLICATION_USER}`,
        `masterauth ${REPLICATION_PASSWORD}`,
        ...(role === 'replica' ? [`replicaof 127.0.0.1 ${servers[0].port}`] : []),
        '',
      ].join('\n'),
    );
    servers.push({ port, conf });
  }
  const sentinels: Server[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const conf = path.join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${NAME} 127.0.0.1 ${servers[0].port} 2`,
        `sentinel down-after-milliseconds ${NAME} ${downAfterMs}`,
        `sentinel failover-timeout ${NAME} ${failoverTimeoutMs}`,
        `sentinel parallel-syncs ${NAME} 1`,
        '',
      ].join('\n'),
    );
    sentinels.push({ port, conf });
  }
  let killed: Server | undefined;
  const startServer = async (server: Server) => {
    server.child = await run(binary, [server.conf], 'redis-server', server.port);
  };

  const set: RedisSentinelSet = {
    name: NAME,
    env: {
      REDIS_SENTINELS: sentinels.map(({ port }) => `127.0.0.1:${port}`).join(','),
      REDIS_SENTINEL_NAME: NAME,
    },
    async primary() {
      let lastError: unknown;
      for (const sentinel of sentinels) {
        try {
          const [host, port] = await ask<[string, string]>(sentinel.port, 'SENTINEL', 'get-master-addr-by-name', NAME);
          return address(host, Number(port));
        } catch (error) {
          lastError = error;
        }
      }
      throw new Error(`no sentinel answered: ${String(lastError)}`);
    },
    async replicas() {
      const fields = await ask<string[][]>(sentinels[0].port, 'SENTINEL', 'replicas', NAME);
      return fields.map((flat) => {
        const info = new Map<string, string>();
        for (let i = 0; i < flat.length; i += 2) info.set(flat[i], flat[i + 1]);
        return address(info.get('ip')!, Number(info.get('port')));
      });
    },
    async cutReplication() {
      const { port } = await set.primary();
      await ask(port, 'ACL', 'SETUSER', REPLICATION_USER, 'off');
      await ask(port, 'CLIENT', 'KILL', 'TYPE', 'replica');
    },
    async killPrimary() {
      const primary = await set.primary();
      const server = servers.find((candidate) => candidate.port === primary.port);
      if (!server?.child) throw new Error(`the primary ${primary.url} is not a server this set runs`);
      await stop(server.child, 'SIGKILL');
      killed = server;
      return primary;
    },
    async failedOver(from, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const now = await set.primary().catch(() => from);
        if (now.port !== from.port) {
          const role = await ask<[string]>(now.port, 'ROLE').catch(() => ['unknown']);
          if (role[0] === 'master') return now;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`the sentinels named no primary other than ${from.url} within ${timeoutMs} ms`);
    },
    async restartKilled() {
      if (!killed) throw new Error('no server was killed');
      await startServer(killed);
      killed = undefined;
    },
    async close() {
      await Promise.all([...sentinels, ...servers].map((member) => stop(member.child)));
      if (madeDir) rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    for (const server of servers) await startServer(server);
    for (const sentinel of sentinels) {
      sentinel.child = await run(binary, [sentinel.conf, '--sentinel'], 'redis sentinel', sentinel.port);
    }
    // Ready once every sentinel knows the replica (it fails over to no one before that).
    const deadline = Date.now() + 30_000;
    for (const sentinel of sentinels) {
      for (;;) {
        const known = await ask<unknown[]>(sentinel.port, 'SENTINEL', 'replicas', NAME).catch(() => []);
        const peers = await ask<unknown[]>(sentinel.port, 'SENTINEL', 'sentinels', NAME).catch(() => []);
        if (known.length === 1 && peers.length === sentinels.length - 1) break;
        if (Date.now() > deadline) throw new Error('the sentinels did not see the replica and each other within 30 s');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } catch (error) {
    await set.close();
    throw error;
  }
  return set;
}
