import { Redis } from 'ioredis';
import { logger } from '../../logger';
import { BotClient } from '../../sdk/bot-client';
import { runSimBot } from '../../sdk/sim-bot';
import { botIdOfDeployment, ContainerStatus, Deployment, DeploySpec, Platform, PlatformError } from '../platform';

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
}

/**
 * The simulated host's keys. `deploys` counts creations per container name (a second one would be a double
 * deploy); `calls` counts deploy calls; `inflight`/`inflightPeak` count deploy calls running at once;
 * `fault` injects failures:
 * `fail` (transient error), `fail-permanent`, or `delay:<ms>` (a slow deploy).
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
  };
}

const NOW_MS = `local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)`;

const CREATE = `${NOW_MS}
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSET', KEYS[4], ARGV[1], now)
local held = redis.call('HLEN', KEYS[1])
if held > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], held) end
return held`;

const REMOVE = `${NOW_MS}
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[2], ARGV[1], now) end
return 0`;

const ENTER = `
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n`;

export function createSimPlatform(options: SimPlatformOptions): Platform {
  const keys = simHostKeys(options.host, options.name);
  const running = new Map<string, AbortController>();
  const remove = (name: string) =>
    options.redis.eval(REMOVE, 3, keys.containers, keys.stoppedAt, keys.owners, name, options.fleetId);
  const ours = async (name: string) => (await options.redis.hget(keys.owners, name)) === options.fleetId;

  const run = (name: string, env: Record<string, string>) => {
    if (running.has(name)) return;
    const controller = new AbortController();
    running.set(name, controller);
    const client = BotClient.fromEnv(env, controller.signal);
    runSimBot(client, controller.signal)
      .catch((error) => {
        if (!controller.signal.aborted) logger.warn('sim bot failed', { botId: env.BOT_ID, error: String(error) });
      })
      .finally(async () => {
        running.delete(name);
        // The bot's program ended, so its container is gone, unless a stop() is already removing it.
        if (!controller.signal.aborted) await remove(name).catch(() => undefined);
      });
  };

  return {
    name: options.name,
    async deploy(spec: DeploySpec): Promise<Deployment> {
      await options.redis.multi().incr(keys.calls).eval(ENTER, 2, keys.inflight, keys.inflightPeak).exec();
      try {
        await injectFault(await options.redis.get(keys.fault));
        await options.redis.eval(
          CREATE, 5, keys.containers, keys.peak, keys.deploys, keys.createdAt, keys.owners,
          spec.name, JSON.stringify(spec.env), options.fleetId,
        );
      } finally {
        await options.redis.decr(keys.inflight);
      }
      if (!(await ours(spec.name))) throw new PlatformError(`${spec.name} belongs to another fleet on this host`, false);
      const env = JSON.parse((await options.redis.hget(keys.containers, spec.name)) ?? '{}');
      run(spec.name, env);
      return { identifier: spec.name, state: 'running' };
    },
    async adopt(name) {
      if (!(await ours(name))) return null;
      const stored = await options.redis.hget(keys.containers, name);
      if (!stored) return null;
      run(name, JSON.parse(stored));
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
      running.get(identifier)?.abort();
      await remove(identifier);
    },
    async close() {
      for (const controller of running.values()) controller.abort();
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
