import { BotApiError, BotClient, sleep, startHeartbeats } from './bot-client';

/**
 * The sim bot: speaks the bot protocol without a browser, for development, tests and load tests.
 * Behaviour comes from config metadata: `sim.durationMs` (time IN_CALL, default 10000) and `sim.behavior`:
 * normal | fail-join (reports FATAL) | crash (stops silently) | hang (stops heartbeating, keeps running) |
 * ignore-leave (does not leave when asked); `sim.recordingKey` is reported with ENDED.
 */
export type SimOutcome = 'completed' | 'left' | 'failed' | 'crashed' | 'hung' | 'gone' | 'stopped';

export async function runSimBot(client: BotClient, signal: AbortSignal): Promise<SimOutcome> {
  let config;
  try {
    config = await client.getConfig();
  } catch (error) {
    if (error instanceof BotApiError && (error.status === 410 || error.status === 404)) return 'gone';
    throw error;
  }
  const behavior = config.metadata['sim.behavior'] ?? 'normal';
  const durationMs = Number(config.metadata['sim.durationMs'] ?? 10000);

  const leave = new AbortController();
  const stopAll = () => leave.abort();
  signal.addEventListener('abort', stopAll, { once: true });
  const heartbeats = startHeartbeats(client, config.heartbeatIntervalMs, () => {
    if (behavior !== 'ignore-leave') leave.abort();
  });
  // A bot resumed after its fleet process died is already past some statuses: a 409 there is fine.
  const advance = (status: 'JOINING_CALL' | 'IN_CALL') =>
    client.reportStatus(status).catch((error) => {
      if (!(error instanceof BotApiError && error.status === 409)) throw error;
    });
  try {
    await advance('JOINING_CALL');
    if (behavior === 'fail-join') {
      await client.reportStatus('FATAL', { reason: 'BOT_ERROR', message: 'simulated join failure' });
      return 'failed';
    }
    if (behavior === 'crash') return 'crashed';
    await advance('IN_CALL');
    if (behavior === 'hang') {
      heartbeats.stop();
      await sleep(2 ** 31 - 1, signal);
      return 'hung';
    }
    await sleep(durationMs, leave.signal);
    if (signal.aborted) return 'stopped';
    const asked = leave.signal.aborted;
    await client.reportStatus('LEAVING').catch((error) => {
      if (!(error instanceof BotApiError && error.status === 409)) throw error;
    });
    // `sim.recordingKey`: as if the bot had uploaded its recording under that key.
    const recordingKey = config.metadata['sim.recordingKey'];
    await client.reportStatus('ENDED', recordingKey ? { recordingKey } : {});
    return asked ? 'left' : 'completed';
  } catch (error) {
    // ended by the fleet meanwhile: a transition it refuses (409), or its token refused since it ended (410)
    if (error instanceof BotApiError && (error.status === 409 || error.status === 410)) return 'gone';
    throw error;
  } finally {
    heartbeats.stop();
    signal.removeEventListener('abort', stopAll);
  }
}
