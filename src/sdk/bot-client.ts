/**
 * A small typed client for bot images (docs/bot-protocol.md). It reads BOT_ID, MILO_URL and MILO_AUTH_TOKEN,
 * retries network errors, 429 and 5xx with backoff and jitter for up to `retryForMs` (two minutes by default,
 * so a report survives a restart of the fleet), and never retries an answer that will not change (401, 404,
 * 409, 410).
 */
import { request, type Dispatcher } from 'undici';

export type ReportableStatus = 'JOINING_CALL' | 'IN_WAITING_ROOM' | 'IN_CALL' | 'LEAVING' | 'ENDED' | 'FATAL';

export interface BotConfig {
  id: string;
  meeting: { platform: string; url?: string; meetingId?: string; password?: string };
  displayName: string;
  imageUrl: string | null;
  automaticLeave: Record<string, number>;
  maxDurationMs: number | null;
  recording: boolean;
  heartbeatIntervalMs: number;
  metadata: Record<string, string>;
}

const REQUEST_TIMEOUT_MS = 10_000;

export class BotApiError extends Error {
  override name = 'BotApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface BotClientOptions {
  baseUrl: string;
  botId: string;
  token: string;
  /** How long one call keeps retrying retryable failures before it gives up. */
  retryForMs?: number;
  /** A request the fleet does not answer within this (10 s by default) is retried like a network error. */
  requestTimeoutMs?: number;
  signal?: AbortSignal;
  /** The connections to the fleet; undici's global pool when absent (one bot per container). */
  dispatcher?: Dispatcher;
}

export class BotClient {
  constructor(private readonly options: BotClientOptions) {}

  static fromEnv(
    env: Record<string, string | undefined> = process.env,
    signal?: AbortSignal,
    dispatcher?: Dispatcher,
  ): BotClient {
    const missing = ['BOT_ID', 'MILO_URL', 'MILO_AUTH_TOKEN'].filter((name) => !env[name]);
    if (missing.length) throw new Error(`missing environment: ${missing.join(', ')}`);
    return new BotClient({
      baseUrl: env.MILO_URL!,
      botId: env.BOT_ID!,
      token: env.MILO_AUTH_TOKEN!,
      signal,
      dispatcher,
    });
  }

  get botId(): string {
    return this.options.botId;
  }

  getConfig(): Promise<BotConfig> {
    return this.call('GET', 'config');
  }

  /** One try: the next beat is the retry. */
  heartbeat(): Promise<{ shouldLeave: boolean }> {
    return this.call('POST', 'heartbeat', {}, 0);
  }

  reportStatus(status: ReportableStatus, extra: { reason?: string; message?: string; recordingKey?: string } = {}) {
    return this.call('POST', 'status', { status, ...extra });
  }

  reportEvent(type: string, data?: unknown) {
    return this.call('POST', 'events', { type, at: new Date().toISOString(), data });
  }

  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    retryForMs = this.options.retryForMs,
  ): Promise<T> {
    const { baseUrl, botId, token } = this.options;
    const giveUpAt = Date.now() + (retryForMs ?? 120_000);
    for (let attempt = 1; ; attempt++) {
      let status = 0;
      let message: string;
      const attemptSignal = abortableRequest(this.options.signal, this.options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS);
      try {
        // undici's request rather than fetch: the same client at about half the CPU a call, which counts where
        // one host runs many bots (the sim host).
        const response = await request(`${baseUrl.replace(/\/$/, '')}/api/bots/${botId}/${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: attemptSignal.signal,
          dispatcher: this.options.dispatcher,
        });
        const text = await response.body.text();
        if (response.statusCode >= 200 && response.statusCode < 300) return (text ? JSON.parse(text) : {}) as T;
        status = response.statusCode;
        message = text;
      } catch (error) {
        if (this.options.signal?.aborted) throw error;
        message = String(error);
      } finally {
        attemptSignal.done();
      }
      const retryable = status === 0 || status === 429 || status >= 500;
      if (!retryable || Date.now() >= giveUpAt)
        throw new BotApiError(status, `${method} ${path}: ${status} ${message}`);
      const backoff = Math.min(5000, 100 * 2 ** attempt);
      await sleep(Math.min(backoff / 2 + Math.random() * (backoff / 2), giveUpAt - Date.now()), this.options.signal);
    }
  }
}

/**
 * A request's signal: aborted by the caller's signal or after `timeoutMs`. A plain timer holds it, not
 * `AbortSignal.any([signal, AbortSignal.timeout(ms)])`: Node 20 holds a timeout signal inside a composite
 * weakly, so after a garbage collection the timeout never fires and a request to a silent server hangs.
 */
function abortableRequest(caller: AbortSignal | undefined, timeoutMs: number) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
  const forward = () => controller.abort(caller?.reason);
  caller?.addEventListener('abort', forward, { once: true });
  if (caller?.aborted) forward();
  return {
    signal: controller.signal,
    done() {
      clearTimeout(timer);
      caller?.removeEventListener('abort', forward);
    },
  };
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The longest a bot waits to try a heartbeat again after one failed (when its interval is longer). */
const HEARTBEAT_RETRY_CAP_MS = 5_000;

/**
 * Heartbeats every `intervalMs` until stopped; calls `onLeave` once when the fleet answers shouldLeave.
 * Heartbeat failures are tolerated: the fleet decides liveness, not the bot. After a failure the next try
 * comes sooner (0.5 s, doubling, with jitter, at most 5 s): a fleet that restarted holds its bots again as
 * soon as they beat, and a bot that waited its whole interval after each failure would come back late.
 */
export function startHeartbeats(
  client: Pick<BotClient, 'heartbeat'>,
  intervalMs: number,
  onLeave: () => void,
): { stop(): void } {
  let stopped = false;
  let told = false;
  let failures = 0;
  const beat = async () => {
    if (stopped) return;
    try {
      const { shouldLeave } = await client.heartbeat();
      failures = 0;
      if (shouldLeave && !told) {
        told = true;
        onLeave();
      }
    } catch {
      failures++;
    }
    const retry = Math.min(HEARTBEAT_RETRY_CAP_MS, 500 * 2 ** (failures - 1));
    const wait = failures === 0 ? intervalMs : Math.min(intervalMs, retry / 2 + Math.random() * (retry / 2));
    if (!stopped) timer = setTimeout(() => void beat(), wait);
  };
  // beat catches its own failures, so its promise never rejects
  let timer = setTimeout(() => void beat(), 0);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
