import { BotClient } from '../../src/sdk/bot-client';
import { spawnUpstreamBot } from './upstream-bot';

/**
 * Test peers run no bot code in their containers (moto's tasks, kwok's pods), so the test plays each bot:
 * every `intervalMs` the peer's `tick` samples how many containers hold capacity and hands over each new
 * running container's env; the player then reports JOINING_CALL → IN_CALL → ENDED through the bot SDK,
 * staying IN_CALL for `inCallMs` (Infinity: until the fleet ends it). With `protocol: 'upstream'` it plays
 * the stand-in upstream bot image instead (upstream-bot.ts), from the same env.
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
  protocol?: 'sdk' | 'upstream';
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
  let running = true;

  const playOne = async (env: Record<string, string>) => {
    if (options.protocol === 'upstream') {
      const { code, output } = await spawnUpstreamBot(env, {
        ...STANDIN_TIMING,
        inCallMs: options.inCallMs ?? 1500,
        signal: stopping.signal,
      });
      if (code !== 0 && !stopping.signal.aborted) errors.push(`${env.BOT_ID}: exit ${code}: ${output}`);
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
      if (!stopping.signal.aborted) errors.push(`${env.BOT_ID}: ${String(error)}`);
    }
  };
  const play = (container: string, env: Record<string, string>) => {
    if (played.has(container)) return;
    played.set(container, env);
    plays.push(playOne(env));
  };

  const loop = (async () => {
    while (running) {
      try {
        samples.push(await tick(played, play));
      } catch (error) {
        errors.push(`player: ${String(error)}`);
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
