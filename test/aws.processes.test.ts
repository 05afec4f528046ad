import { botToken } from '../src/auth/bot-token';
import { botIdOfEnv } from './support/bot-id-of-env';
import { tagValue } from '../src/platforms/aws/task-status';
import { AwsPeer, playBots, startAwsPeer } from './support/aws';
import { FleetProcess, meetings, spawnFleetProcess, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * The aws platform's bot limit across processes, against moto: the API in this process, the aws worker
 * group in two `node dist/src/main.js worker` processes. Moto's own task list is the judge.
 */
jest.setTimeout(420_000);

let peer: AwsPeer;
let t: TestFleet;
const workers: FleetProcess[] = [];
const S3 = {
  S3_ENDPOINT: 'http://127.0.0.1:9000',
  S3_ACCESS_KEY: 'ak',
  S3_SECRET_KEY: 'sk',
  S3_BUCKET_NAME: 'recordings',
};

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.kill('SIGTERM')));
  await t?.close();
  await peer?.close();
});

it('PLATFORM_PRIORITY=aws, AWS_BOT_LIMIT=7, 2 worker processes, 100 bots: never more than 7 RUNNING tasks in moto, one task per bot, all complete', async () => {
  peer = await startAwsPeer();
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'aws', ...peer.env, AWS_BOT_LIMIT: '7', GLOBAL_QUEUE_TIMEOUT_MS: '600000', ...S3 },
    { api: true, workers: false },
  );
  const created = await Promise.all(
    Array.from({ length: 100 }, () => t.request('POST', '/api/bots', { body: { meeting: meetings.meet } })),
  );
  expect(created.every((r) => r.status === 201)).toBe(true);
  const ids = created.map((r) => r.body.id as string);

  // Tasks with desiredStatus RUNNING, read from moto every 50 ms; each bot stays in its call 300 ms.
  const player = playBots(peer, { inCallMs: 300, intervalMs: 50 });
  workers.push(
    spawnFleetProcess('worker', { ...t.env, PORT: '0' }),
    spawnFleetProcess('worker', { ...t.env, PORT: '0' }),
  );
  await waitFor(
    async () =>
      (await t.fleet.models.Bot.countDocuments({ _id: { $in: ids }, status: { $in: ['ENDED', 'FATAL'] } })) ===
      ids.length,
    'all 100 bots to end',
    360_000,
    1000,
  );
  // The last bots' tasks are stopped right after their end.
  await waitFor(async () => (await peer.tasks('RUNNING')).length === 0, 'every task to be stopped');
  await player.stop();

  const bots = await t.fleet.models.Bot.find({ _id: { $in: ids } }).lean();
  expect(
    bots.map((b) => `${b.status}/${b.endReason}/${b.platform}`).filter((s) => s !== 'ENDED/COMPLETED/aws'),
  ).toEqual([]);
  expect(player.errors).toEqual([]);

  const peak = Math.max(...player.samples);
  expect(peak).toBeLessThanOrEqual(7);
  expect(peak).toBeGreaterThanOrEqual(1);

  const tasks = await peer.tasks('STOPPED');
  const perBot = new Map<string, number>();
  for (const task of tasks)
    perBot.set(tagValue(task, 'meeboter:bot')!, (perBot.get(tagValue(task, 'meeboter:bot')!) ?? 0) + 1);
  expect(ids.filter((id) => perBot.get(id) !== 1)).toEqual([]);
  expect(tasks).toHaveLength(100);

  // Every task carried its own bot's env.
  expect(player.played.size).toBe(100);
  for (const env of player.played.values()) {
    expect(env).toMatchObject({
      MILO_URL: t.env.PUBLIC_URL,
      MILO_AUTH_TOKEN: botToken(t.env.BOT_TOKEN_SECRET, botIdOfEnv(env)!, Number(env.BOT_ID)),
      NODE_ENV: 'production',
      S3_REGION: 'us-east-1',
      ...S3,
    });
  }
  expect(new Set([...player.played.values()].map((env) => botIdOfEnv(env)))).toEqual(new Set(ids));
  process.stdout.write(
    `aws 100 bots / limit 7 / 2 workers: peak RUNNING tasks in moto ${peak} over ${player.samples.length} samples, ` +
      `${tasks.length} tasks for ${perBot.size} bots, RunTask calls ${peer.proxy.calls('RunTask')}\n`,
  );
});
