import { Redis } from 'ioredis';
import { Agent } from 'undici';
import { logger } from '../../logger';
import { BotClient } from '../../sdk/bot-client';
import { runSimBot } from '../../sdk/sim-bot';
import { botIdOfDeployment, ContainerStatus, Deployment, DeploySpec, Platform, PlatformError } from '../platform';
import { RedisScript } from '../../redis-script';

/**
 * `sim`: a load-testing platform. Its "containers" are entries in a Redis hash (the simulated host, shared
 * by all fleet processes) and each runs the sim bot in-process, so thousands fit on one machine. The host
 * keeps the peak number of containers it ever held at once, which tests read to check the bot limit.
 * A container whose process died keeps its entry until stopped; adopting it resumes its bot here. Each
 * container is owned by the fleet that created it (`owners`), and a fleet sees only its own.
 */
export interface SimPlatformOptions {
  name: string;
  redis: Redis;
  /** The simulated host (a Redis namespace); several fleets may share one. */
  host: string;
  fleetId: string;
  /** `sim-host`: bots run in a `npm run sim-host` process on the same host, not in this one. */
  runner?: 'in-process' | 'sim-host';
}

/**
 * The simulated host's keys. `deploys` counts creations per container name (a second one would be a double
 * deploy); `calls` counts deploy calls; `inflight`/`inflightPeak` count deploy calls running at once (only
 * one that injects a fault takes time: one without is a single script);
 * `fault` injects failures:
 * `fail` (transient error), `fail-permanent`, `fail-after-start` (the container is created, then the deploy
 * call fails before its bot runs, as one whose start watch lost the platform's API), `fail-after-run:<ms>`
 * (the same, but the bot runs for `ms` before the call fails), or `delay:<ms>`.
 */
export function simHostKeys(host: string, name: string) {
  const base = `${host}:sim:${name}`;
  return {
    containers: `${base}:containers`,
    owners: `${base}:owners`,
    peak: `${base}:peak`,
    deploys: `${base}:deploys`,
    inflight: `${base}:inflight`,
    inflightPeak: `${base}:inflight-peak`,
    calls: `${base}:deploy-calls`,
    /** Redis-clock milliseconds of each container's creation and stop, for the benchmark's latencies. */
    createdAt: `${base}:created-at`,
    stoppedAt: `${base}:stopped-at`,
    fault: `${base}:fault`,
    /** For a separate sim host process: containers to start (a list) and to stop (a channel). */
    starts: `${base}:starts`,
    stops: `${base}:stops`,
  };
}

const NOW_MS = `local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)`;

/**
 * Creates the container unless it exists, then answers its owner and env. KEYS from the 5th: containers,
 * peak, deploys, created-at, owners, starts; ARGV: name, env JSON, fleet, '1' to push the name onto
 * `starts` for a sim host process if the container is this fleet's.
 */
const CREATE_CONTAINER = `
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[9], ARGV[1], ARGV[3])
  redis.call('HINCRBY', KEYS[7], ARGV[1], 1)
  redis.call('HSET', KEYS[8], ARGV[1], now)
  local held = redis.call('HLEN', KEYS[5])
  if held > tonumber(redis.call('GET', KEYS[6]) or '0') then redis.call('SET', KEYS[6], held) end
end
local owner = redis.call('HGET', KEYS[9], ARGV[1])
if owner == ARGV[3] and ARGV[4] == '1' then redis.call('RPUSH', KEYS[10], ARGV[1]) end
return {'created', owner, redis.call('HGET', KEYS[5], ARGV[1])}`;

/**
 * A deploy call. KEYS: calls, inflight, inflight peak, fault, then CREATE_CONTAINER's. Counts the call; with
 * no fault to inject it creates the container at once (so it never overlaps another), otherwise it counts
 * the call as running (and the peak of those at once) and answers the fault; FINISH then creates.
 */
const DEPLOY = new RedisScript(`${NOW_MS}
redis.call('INCR', KEYS[1])
local fault = redis.call('GET', KEYS[4])
if fault then
  local n = redis.call('INCR', KEYS[2])
  if n > tonumber(redis.call('GET', KEYS[3]) or '0') then redis.call('SET', KEYS[3], n) end
  return {'fault', fault}
end
${CREATE_CONTAINER}`);

/** The end of a deploy call that injected a fault: no longer running; creates the container. KEYS, ARGV: DEPLOY's. */
const FINISH = new RedisScript(`${NOW_MS}
redis.call('DECR', KEYS[2])
${CREATE_CONTAINER}`);

const REMOVE = new RedisScript(`${NOW_MS}
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[2], ARGV[1], now) end
return 0`);

/** Runs the bots of a simulated host's containers: here, or by asking a sim host process to. */
interface SimRunner {
  start(name: string, env: Record<string, string>): Promise<void>;
  stop(name: string): Promise<void>;
  close(): void;
}

export function createSimPlatform(options: SimPlatformOptions): Platform {
  const keys = simHostKeys(options.host, options.name);
  const ours = async (name: string) => (await options.redis.hget(keys.owners, name)) === options.fleetId;
  const runner: SimRunner =
    options.runner === 'sim-host'
      ? {
          start: async (name) => void (await options.redis.rpush(keys.starts, name)),
          stop: async (name) => void (await options.redis.publish(keys.stops, name)),
          close: () => undefined,
        }
      : createInProcessRunner(options.redis, keys, options.fleetId);
  return {
    name: options.name,
    // In-process bots run in the worker that deployed (or adopted) them; a sim host's, in the sim host.
    stopsOnlyWhereDeployed: options.runner !== 'sim-host',
    async deploy(spec: DeploySpec): Promise<Deployment> {
      // A sim host's bot is started by the script itself (a push onto its list), in-process bots below.
      const onHost = options.runner === 'sim-host';
      const keysAndArgs = [
        keys.calls,
        keys.inflight,
        keys.inflightPeak,
        keys.fault,
        keys.containers,
        keys.peak,
        keys.deploys,
        keys.createdAt,
        keys.owners,
        keys.starts,
        spec.name,
        JSON.stringify(spec.env),
        options.fleetId,
      ];
      let answer = (await DEPLOY.run(options.redis, 10, ...keysAndArgs, onHost ? '1' : '0')) as [
        string,
        string | null,
        string | null,
      ];
      const fault = answer[0] === 'fault' ? answer[1] : null;
      if (fault !== null) {
        try {
          await injectFault(fault);
        } catch (error) {
          await options.redis.decr(keys.inflight);
          throw error;
        }
        answer = (await FINISH.run(
          options.redis,
          10,
          ...keysAndArgs,
          onHost && fault !== 'fail-after-start' ? '1' : '0',
        )) as typeof answer;
      }
      const [, owner, storedEnv] = answer;
      if (owner !== options.fleetId)
        throw new PlatformError(`${spec.name} belongs to another fleet on this host`, false);
      const env = JSON.parse(storedEnv ?? '{}') as DeploySpec['env'];
      if (fault === 'fail-after-start')
        throw new PlatformError('simulated failure after the container was created', false);
      if (!onHost) await runner.start(spec.name, env);
      const failAfterRun = /^fail-after-run:(\d+)$/.exec(fault ?? '');
      if (failAfterRun) {
        await new Promise((resolve) => setTimeout(resolve, Number(failAfterRun[1])));
        throw new PlatformError('simulated failure after the container started running', false);
      }
      return { identifier: spec.name, state: 'running' };
    },
    async adopt(name) {
      if (!(await ours(name))) return null;
      const stored = await options.redis.hget(keys.containers, name);
      if (!stored) return null;
      await runner.start(name, JSON.parse(stored) as DeploySpec['env']);
      return { identifier: name, state: 'running' };
    },
    async status(identifier): Promise<ContainerStatus> {
      return { state: (await ours(identifier)) ? 'running' : 'gone' };
    },
    async list() {
      const owners = await options.redis.hgetall(keys.owners);
      return Object.entries(owners)
        .filter(([, fleet]) => fleet === options.fleetId)
        .map(([name]) => ({ identifier: name, botId: botIdOfDeployment(name) }));
    },
    async stop(identifier) {
      await runner.stop(identifier);
      await removeContainer(options.redis, keys, identifier, options.fleetId);
    },
    close() {
      runner.close();
      return Promise.resolve();
    },
  };
}

const removeContainer = (redis: Redis, keys: SimHostKeys, name: string, fleetId: string) =>
  REMOVE.run(redis, 3, keys.containers, keys.stoppedAt, keys.owners, name, fleetId);

type SimHostKeys = ReturnType<typeof simHostKeys>;

/**
 * The bots of one runner (one fleet's, in one process) share this many keep-alive connections to the fleet.
 * Unbounded, a burst of their requests opens hundreds of connections at once, and a busy API process accepts
 * one new connection per event-loop turn (BENCHMARKS.md, "New connections wait"): every fresh connection, a
 * client's too, then waits seconds.
 */
export const SIM_BOT_CONNECTIONS = 16;

/** Each bot as a promise in this process; a bot whose program ends removes its own container. */
function createInProcessRunner(redis: Redis, keys: SimHostKeys, fleetId: string): SimRunner & { running(): number } {
  const running = new Map<string, AbortController>();
  const connections = new Agent({ connections: SIM_BOT_CONNECTIONS });
  return {
    start(name, env) {
      // In the executor, an env without the bot's variables rejects the start rather than throwing at the caller.
      return new Promise<void>((resolve) => {
        if (running.has(name)) return resolve();
        const controller = new AbortController();
        running.set(name, controller);
        const client = BotClient.fromEnv(env, controller.signal, connections);
        runSimBot(client, controller.signal)
          .catch((error) => {
            if (!controller.signal.aborted) logger.warn('sim bot failed', { botId: env.BOT_ID, error: String(error) });
          })
          .finally(async () => {
            running.delete(name);
            // The bot's program ended, so its container is gone, unless a stop() is already removing it.
            if (!controller.signal.aborted) await removeContainer(redis, keys, name, fleetId).catch(() => undefined);
          });
        resolve();
      });
    },
    stop(name) {
      running.get(name)?.abort();
      return Promise.resolve();
    },
    close() {
      for (const controller of running.values()) controller.abort();
      // A second close() rejects (the pool is gone already); unhandled, that rejection would end the process.
      connections.close().catch(() => undefined);
    },
    running: () => running.size,
  };
}

/**
 * A sim host process (`npm run sim-host`): runs the bots of every container the `sim-host` runner of any
 * fleet asks for on this simulated host and platform, and stops them when asked. Returns the stopper.
 * `runBots: false` runs none: each container is like one whose bot never calls the fleet (the benchmark's
 * create path alone).
 */
export async function runSimHost(
  redis: Redis,
  subscriber: Redis,
  host: string,
  platformName: string,
  { runBots = true } = {},
): Promise<{ running(): number; close(): Promise<void> }> {
  const keys = simHostKeys(host, platformName);
  const runners = new Map<string, ReturnType<typeof createInProcessRunner>>();
  const runnerOf = (fleetId: string) => {
    if (!runners.has(fleetId)) runners.set(fleetId, createInProcessRunner(redis, keys, fleetId));
    return runners.get(fleetId)!;
  };
  await subscriber.subscribe(keys.stops);
  subscriber.on('message', (channel, name: string) => {
    if (channel === keys.stops) for (const runner of runners.values()) void runner.stop(name);
  });
  let closed = false;
  const loop = (async () => {
    while (!closed) {
      const popped = await redis.blpop(keys.starts, 1).catch(() => null);
      if (!popped) continue;
      const name = popped[1];
      if (!runBots) continue;
      const [env, fleetId] = await Promise.all([redis.hget(keys.containers, name), redis.hget(keys.owners, name)]);
      if (env && fleetId) await runnerOf(fleetId).start(name, JSON.parse(env) as DeploySpec['env']);
    }
  })();
  return {
    running: () => [...runners.values()].reduce((sum, runner) => sum + runner.running(), 0),
    async close() {
      closed = true;
      await loop;
      for (const runner of runners.values()) runner.close();
    },
  };
}

async function injectFault(fault: string | null): Promise<void> {
  if (!fault) return;
  if (fault === 'fail') throw new PlatformError('simulated transient deploy failure', true);
  if (fault === 'fail-permanent') throw new PlatformError('simulated permanent deploy failure', false);
  const delay = /^delay:(\d+)$/.exec(fault);
  if (delay) await new Promise((resolve) => setTimeout(resolve, Number(delay[1])));
}
