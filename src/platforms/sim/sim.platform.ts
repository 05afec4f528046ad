import { Redis } from 'ioredis';
import { logger } from '../../logger';
import { BotClient } from '../../sdk/bot-client';
import { runSimBot } from '../../sdk/sim-bot';
import { botIdOfDeployment, ContainerStatus, Deployment, DeploySpec, Platform, PlatformError } from '../platform';

/**
 * `sim`: a load-testing platform. Its "containers" are entries in a Redis hash (the simulated host, shared
 * by all fleet processes) and each runs the sim bot in-process, so thousands fit on one machine. The host
 * keeps the peak number of containers it ever held at once, which tests read to check the bot limit.
 * A container whose process died keeps its entry until stopped; adopting it resumes its bot here.
 */
export interface SimPlatformOptions {
  name: string;
  redis: Redis;
  prefix: string;
}

/**
 * The simulated host's keys. `deploys` counts creations per container name (a second one would be a double
 * deploy); `calls` counts deploy calls; `inflight`/`inflightPeak` count deploy calls running at once;
 * `fault` injects failures:
 * `fail` (transient error), `fail-permanent`, or `delay:<ms>` (a slow deploy).
 */
export function simHostKeys(prefix: string, name: string) {
  const base = `${prefix}:sim:${name}`;
  return {
    containers: `${base}:containers`,
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
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSET', KEYS[4], ARGV[1], now)
local held = redis.call('HLEN', KEYS[1])
if held > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], held) end
return held`;

const REMOVE = `${NOW_MS}
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[2], ARGV[1], now) end
return 0`;

const ENTER = `
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n`;

export function createSimPlatform(options: SimPlatformOptions): Platform {
  const keys = simHostKeys(options.prefix, options.name);
  const running = new Map<string, AbortController>();
  const remove = (name: string) => options.redis.eval(REMOVE, 2, keys.containers, keys.stoppedAt, name);

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
        await options.redis.eval(CREATE, 4, keys.containers, keys.peak, keys.deploys, keys.createdAt, spec.name, JSON.stringify(spec.env));
      } finally {
        await options.redis.decr(keys.inflight);
      }
      const env = JSON.parse((await options.redis.hget(keys.containers, spec.name)) ?? '{}');
      run(spec.name, env);
      return { identifier: spec.name, state: 'running' };
    },
    async adopt(name) {
      const stored = await options.redis.hget(keys.containers, name);
      if (!stored) return null;
      run(name, JSON.parse(stored));
      return { identifier: name, state: 'running' };
    },
    async status(identifier): Promise<ContainerStatus> {
      return { state: (await options.redis.hexists(keys.containers, identifier)) ? 'running' : 'gone' };
    },
    async list() {
      const names = await options.redis.hkeys(keys.containers);
      return names.map((name) => ({ identifier: name, botId: botIdOfDeployment(name) }));
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
