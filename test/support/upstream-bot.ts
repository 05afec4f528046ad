import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { createTRPCProxyClient, httpBatchLink } from '@trpc/client';
import superjson from 'superjson';
import type { ImageRouter } from '../../src/api/trpc/trpc-router';

/**
 * A stand-in for the upstream Meeboter bot images: it reads the env they read (`BOT_ID` through `Number()`,
 * `POOL_SLOT_UUID`, `MILO_URL`, `MILO_AUTH_TOKEN`, `NODE_ENV`) and speaks to the fleet with a client built
 * exactly as their `apps/bots/src/trpc.ts` builds it. Used as a `LOCAL_BOT_COMMAND` process and by the test
 * bot player for containers that run no code (kwok pods, moto tasks, Coolify test slots).
 *
 * What it does comes from the bot's `displayName` (the images have no other free field):
 * `standin:leave` stays in the call until a heartbeat says `shouldLeave`; `standin:done` ends DONE after
 * `STANDIN_IN_CALL_MS` with a recording key and speaker timeframes; `standin:fatal` ends FATAL. Each chat
 * message it takes is logged back (`chat: <text>`), so a test sees what was delivered, and how often.
 */
export function imageClient(miloUrl: string, token: string) {
  return createTRPCProxyClient<ImageRouter>({
    links: [
      httpBatchLink({ url: miloUrl + '/api/trpc', transformer: superjson, headers: () => ({ 'X-Milo-Token': token }) }),
    ],
  });
}

export interface StandInOptions {
  heartbeatMs?: number;
  chatPollMs?: number;
  inCallMs?: number;
  signal?: AbortSignal;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });

/** Plays one bot's life; resolves with how it ended. */
export async function runUpstreamBot(
  env: Record<string, string | undefined>,
  options: StandInOptions = {},
): Promise<string> {
  if (!['development', 'production', 'test'].includes(env.NODE_ENV ?? ''))
    throw new Error('NODE_ENV must be development, production or test');
  if (!env.MILO_URL || !env.MILO_AUTH_TOKEN) throw new Error('MILO_URL and MILO_AUTH_TOKEN are required');
  const client = imageClient(env.MILO_URL, env.MILO_AUTH_TOKEN);
  const config = env.BOT_ID
    ? await client.bots.getConfig.query({ botId: Number(env.BOT_ID) })
    : await client.infrastructure.coolify.pool.getSlot.query({ poolSlotUuid: env.POOL_SLOT_UUID ?? '' });
  if (!(config.startTime instanceof Date) || Number.isNaN(config.startTime.getTime()))
    throw new Error('startTime did not decode as a Date');
  const id = config.id;
  const mode = config.displayName.replace(/^standin:/, '');
  const { signal } = options;

  let shouldLeave = false;
  let done = false;
  const pending: Array<{ id: string; botId: number; timestamp: Date; level: 'INFO'; message: string; context: null }> =
    [];
  const log = (message: string) =>
    pending.push({ id: randomUUID(), botId: id, timestamp: new Date(), level: 'INFO', message, context: null });
  const report = async (status: 'JOINING_CALL' | 'IN_WAITING_ROOM' | 'IN_CALL') => {
    await client.bots.events.report.mutate({
      id: String(id) as unknown as number,
      event: { eventType: status, eventTime: new Date(), data: null },
    });
    await client.bots.updateStatus.mutate({ id: String(id) as unknown as number, status });
  };

  // The images send ids as strings where the server transforms them; heartbeat and log stream go out together.
  const beat = async () => {
    const entries = pending.splice(0);
    const [answer] = await Promise.all([
      client.bots.sendHeartbeat.mutate({ id: String(id) as unknown as number }),
      entries.length
        ? client.bots.logs.stream.mutate({ botId: String(id) as unknown as number, entries })
        : Promise.resolve(null),
    ]);
    if (answer.shouldLeave) shouldLeave = true;
  };
  const heartbeats = (async () => {
    while (!done && !signal?.aborted) {
      await beat().catch(() => undefined);
      await sleep(options.heartbeatMs ?? 10_000, signal);
    }
  })();
  const chat = (async () => {
    while (!done && !signal?.aborted) {
      const message = await client.bots.chat.dequeueMessage
        .query({ botId: String(id) as unknown as number })
        .catch(() => null);
      if (message) log(`chat: ${message.messageText}`);
      await sleep(options.chatPollMs ?? 5_000, signal);
    }
  })();

  try {
    log('joining');
    await report('JOINING_CALL');
    await report('IN_WAITING_ROOM');
    await report('IN_CALL');
    if (mode === 'fatal') {
      await client.bots.updateStatus.mutate({ id: String(id) as unknown as number, status: 'FATAL' });
      return 'FATAL';
    }
    const until = Date.now() + (options.inCallMs ?? 5_000);
    while (!signal?.aborted && !shouldLeave && (mode === 'leave' || Date.now() < until)) await sleep(100, signal);
    if (signal?.aborted) return 'aborted';
    await beat();
    await client.bots.logs.flush.mutate({ botId: String(id) as unknown as number });
    await client.bots.updateStatus.mutate({
      id: String(id) as unknown as number,
      status: 'DONE',
      ...(mode === 'done'
        ? {
            recording: `bots/${id}/recordings/${randomUUID()}-${config.meeting.platform}.webm`,
            speakerTimeframes: [{ speakerName: 'Ada', start: 0, end: 1500 }],
          }
        : {}),
    });
    return shouldLeave ? 'left' : 'DONE';
  } finally {
    done = true;
    await Promise.all([heartbeats, chat]);
  }
}

/**
 * Runs the stand-in as its own process (`node dist/test/support/upstream-bot.js`, build first) with exactly
 * `env`, as a container would; stopped by `signal`. Under jest the in-process client does not decode
 * superjson's Dates, so players run it this way. Resolves with its output once it exited.
 */
export function spawnUpstreamBot(
  env: Record<string, string>,
  options: StandInOptions = {},
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [path.resolve(__dirname, '../../dist/test/support/upstream-bot.js')], {
    env: {
      ...env,
      STANDIN_HEARTBEAT_MS: String(options.heartbeatMs ?? 10_000),
      STANDIN_CHAT_POLL_MS: String(options.chatPollMs ?? 5_000),
      STANDIN_IN_CALL_MS: String(options.inCallMs ?? 5_000),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const stop = () => child.kill('SIGKILL');
  options.signal?.addEventListener('abort', stop, { once: true });
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      options.signal?.removeEventListener('abort', stop);
      resolve({ code, output });
    }),
  );
}

if (require.main === module) {
  runUpstreamBot(process.env, {
    heartbeatMs: Number(process.env.STANDIN_HEARTBEAT_MS ?? 10_000),
    chatPollMs: Number(process.env.STANDIN_CHAT_POLL_MS ?? 5_000),
    inCallMs: Number(process.env.STANDIN_IN_CALL_MS ?? 5_000),
  }).then(
    (outcome) => process.stdout.write(`stand-in bot finished: ${outcome}\n`),
    (error) => {
      process.stderr.write(`stand-in bot failed: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
