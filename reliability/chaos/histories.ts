import { loadConfig } from '../../src/config';
import { createMongo, createRedis } from '../../src/connections';
import { createBotChanges } from '../../src/store/bot-changes';
import { BotHistory } from './invariants';

/**
 * Every bot's history after the run, as the fleet recorded it: its bot document and events in MongoDB, once
 * the fleet's flushers have written every change (so MongoDB holds what `GET /api/bots/:id/events` would
 * answer). Read in two queries rather than two requests a bot: on FerretDB (whose SQLite backend scans the
 * whole events collection for each bot's query) an hour's bots took 1.4 s each through the API, longer than
 * the run.
 */
const text = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);

export async function readHistories(
  fleetEnv: Record<string, string>,
  botIds: readonly string[],
  flushWaitMs: number,
): Promise<BotHistory[]> {
  const config = loadConfig(fleetEnv);
  const redis = createRedis(config.redisSentinel ?? config.redisUrl!, 'worker', 'chaos-histories');
  try {
    if (!(await createBotChanges(redis, config.redisPrefix).waitFlushed('now', flushWaitMs)))
      throw new Error(`the fleet's flushers did not write every change to MongoDB within ${flushWaitMs / 1000} s`);
  } finally {
    redis.disconnect();
  }
  const connection = await createMongo(fleetEnv.MONGODB_URI);
  try {
    // The run's database holds its bots alone.
    const bots = await connection
      .db!.collection('bots')
      .find({}, { projection: { createdAt: 1, status: 1, endReason: 1 } })
      .toArray();
    const events = await connection
      .db!.collection('bot_events')
      .find({}, { projection: { botId: 1, type: 1, status: 1, at: 1, seq: 1, 'data.platform': 1 } })
      .toArray();
    const eventsOf = new Map<string, typeof events>();
    for (const event of events) {
      const botId = String(event.botId);
      eventsOf.set(botId, [...(eventsOf.get(botId) ?? []), event]);
    }
    const byId = new Map(bots.map((bot) => [String(bot._id), bot]));
    return botIds.map((id) => {
      const bot = byId.get(id);
      if (!bot) throw new Error(`bot ${id} is not in the fleet's MongoDB after the run`);
      const history = (eventsOf.get(id) ?? []).sort(
        // the order the API answers a history in
        (a, b) =>
          (a.at as Date).getTime() - (b.at as Date).getTime() ||
          text(String(a.seq ?? ''), String(b.seq ?? '')) ||
          text(String(a._id), String(b._id)),
      );
      return {
        id,
        createdAt: (bot.createdAt as Date).getTime(),
        status: bot.status as string,
        endReason: (bot.endReason as string | null | undefined) ?? null,
        events: history.map((event) => ({
          type: event.type as string,
          status: (event.status as string | null | undefined) ?? null,
          at: (event.at as Date).getTime(),
          platform: (event.data as { platform?: string } | null | undefined)?.platform ?? null,
        })),
      };
    });
  } finally {
    await connection.close();
  }
}
