import { BotClient } from '../../src/sdk/bot-client';
import { runSimBot } from '../../src/sdk/sim-bot';
import { spawnUpstreamBot } from './upstream-bot';

/**
 * Test peers run no bot code in their containers (moto's tasks, kwok's pods), so the test plays each bot:
 * every `intervalMs` the peer's `tick` samples how many containers hold capacity and hands over each new
 * running container's env; the player then reports JOINING_CALL → IN_CALL → ENDED through the bot SDK,
 * staying IN_CALL for `inCallMs` (Infinity: until the fleet ends it). With `protocol: 'upstream'` it plays
 * the stand-in upstream bot image instead (upstream-bot.ts), from the same env; with `protocol: 'sim'` the sim bot
 * (src/sdk/sim-bot.ts), whose behaviour and time in call come from the bot's metadata.
 */
export interface BotPlayer {
  /** Container (task ARN, pod name) → the env it was played with. */
  played: Map<string, Record<string, string>>;
  /** One count per interval, of what the peer's tick counts. */
  samples: number[];
  errors: string[];
  stop(): Promise<void>;
}

export interface PlayerOptions {
  inCallMs?: number;
  intervalMs?: number;
  /**
   * `sim`: the sim bot. Its tick must offer every running container on every sample: a played container the
   * tick no longer offers has ended, and its bot stops with it (as a bot's process dies with its container).
   */
  protocol?: 'sdk' | 'upstream' | 'sim';
  /** Told each error as it is recorded in `errors`. */
  onError?: (line: string) => void;
}

/** How often the stand-in upstream bot beats and polls its chat in tests (the images: 10 s and 5 s). */
export const STANDIN_TIMING = { heartbeatMs: 300, chatPollMs: 200 };

/** One sample: returns the count; calls `play` for each new running container (`played` says which are known). */
export type PlayerTick = (
  played: ReadonlyMap<string, unknown>,
  play: (container: string, env: Record<string, string>) => void,
) => Promise<number>;

export function startBotPlayer(tick: PlayerTick, options: PlayerOptions = {}, close?: () => void): BotPlayer {
  const inCallMs = options.inCallMs ?? 200;
  const played = new Map<string, Record<string, string>>();
  const samples: number[] = [];
  const errors: string[] = [];
  const plays: Promise<void>[] = [];
  const stopping = new AbortController();
  /** Sim bots by container: each stops when its container is no longer offered. */
  const containers = new Map<string, AbortController>();
  let running = true;
  const recordError = (line: string) => {
    errors.push(line);
    options.onError?.(line);
  };

  const playOne = async (container: string, env: Record<string, string>) => {
    if (options.protocol === 'sim') {
      const ended = new AbortController();
      containers.set(container, ended);
      const signal = AbortSignal.any([stopping.signal, ended.signal]);
      await runSimBot(BotClient.fromEnv(env, signal), signal).catch((error) => {
        if (!signal.aborted) recordError(`${env.BOT_ID}: ${String(error)}`);
      });
      return;
    }
    if (options.protocol === 'upstream') {
      const { code, output } = await spawnUpstreamBot(env, {
        ...STANDIN_TIMING,
        inCallMs: options.inCallMs ?? 1500,
        signal: stopping.signal,
      });
      if (code !== 0 && !stopping.signal.aborted) recordError(`${env.BOT_ID}: exit ${code}: ${output}`);
      return;
    }
    const client = BotClient.fromEnv(env, stopping.signal);
    try {
      await client.reportStatus('JOINING_CALL');
      await client.reportStatus('IN_CALL');
      if (inCallMs === Infinity) return;
      await new Promise((resolve) => setTimeout(resolve, inCallMs));
      await client.reportStatus('ENDED');
    } catch (error) {
      if (!stopping.signal.aborted) recordError(`${env.BOT_ID}: ${String(error)}`);
    }
  };
  let offered = new Set<string>();
  const play = (container: string, env: Record<string, string>) => {
    offered.add(container);
    if (played.has(container)) return;
    played.set(container, env);
    plays.push(playOne(container, env));
  };

  const loop = (async () => {
    while (running) {
      offered = new Set();
      try {
        samples.push(await tick(played, play));
        for (const [container, ended] of containers) {
          if (offered.has(container)) continue;
          ended.abort();
          containers.delete(container);
        }
      } catch (error) {
        recordError(`player: ${String(error)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
    }
  })();

  return {
    played,
    samples,
    errors,
    async stop() {
      running = false;
      await loop;
      stopping.abort();
      await Promise.all(plays);
      close?.();
    },
  };
}
