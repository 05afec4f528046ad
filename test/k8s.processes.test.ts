import { K8sPeer, NAMESPACE, playBots, startK8sPeer } from './support/k8s';
import { SLOW_PULL_MS } from './support/kwok-stages';
import { FleetProcess, meetings, spawnFleetProcess, startTestFleet, TestFleet, waitFor } from './support/fleet';
import { botIdOfEnv } from './support/bot-id-of-env';

/**
 * The k8s platform across processes, against a real control plane: the API in this process, the k8s worker
 * group in two `node dist/src/main.js worker` processes, with the deploy/k8s ServiceAccount. The API server's
 * own lists are the judge.
 */
jest.setTimeout(480_000);

let peer: K8sPeer;
let t: TestFleet | undefined;
const workers: FleetProcess[] = [];
const S3 = {
  S3_ENDPOINT: 'http://127.0.0.1:9000',
  S3_ACCESS_KEY: 'ak',
  S3_SECRET_KEY: 'sk',
  S3_BUCKET_NAME: 'recordings',
};

beforeAll(async () => {
  peer = await startK8sPeer();
}, 300_000);
afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.kill('SIGTERM')));
  await t?.close();
  t = undefined;
});
afterAll(() => peer?.close());

const everything = async () => ({
  jobs: (await peer.batch.listNamespacedJob({ namespace: NAMESPACE, labelSelector: 'app=meeboter-bot' })).items.length,
  pods: (await peer.pods('app=meeboter-bot')).length,
  secrets: (await peer.core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector: 'app=meeboter-bot' })).items
    .length,
});

it('K8S_BOT_LIMIT=5, 2 worker processes, 30 bots: never more than 5 Jobs with a live pod, one Job per bot, all complete, nothing left', async () => {
  t = await startTestFleet(
    {
      PLATFORM_PRIORITY: 'k8s',
      ...peer.env,
      K8S_BOT_LIMIT: '5',
      K8S_IMAGE_PULL_LOCK_ENABLED: 'false',
      GLOBAL_QUEUE_TIMEOUT_MS: '600000',
      ...S3,
    },
    { api: true, workers: false },
  );
  const fleet = t;
  const created = await Promise.all(
    Array.from({ length: 30 }, () => fleet.request('POST', '/api/bots', { body: { meeting: meetings.meet } })),
  );
  expect(created.every((r) => r.status === 201)).toBe(true);
  const ids = created.map((r) => r.body.id as string);
  const player = playBots(peer, { inCallMs: 300, intervalMs: 50 });
  workers.push(
    spawnFleetProcess('worker', { ...fleet.env, PORT: '0' }),
    spawnFleetProcess('worker', { ...fleet.env, PORT: '0' }),
  );
  await waitFor(
    async () =>
      (await fleet.fleet.models.Bot.countDocuments({ _id: { $in: ids }, status: { $in: ['ENDED', 'FATAL'] } })) ===
      ids.length,
    'all 30 bots to end',
    400_000,
    1000,
  );
  // The Jobs of the last bots are deleted right after their end; the garbage collector takes pods and Secrets.
  await waitFor(
    async () => Object.values(await everything()).every((n) => n === 0),
    'Jobs, pods and Secrets to be gone',
    120_000,
    500,
  );
  await player.stop();

  const bots = await fleet.fleet.models.Bot.find({ _id: { $in: ids } }).lean();
  expect(
    bots.map((b) => `${b.status}/${b.endReason}/${b.platform}`).filter((s) => s !== 'ENDED/COMPLETED/k8s'),
  ).toEqual([]);
  expect(player.errors).toEqual([]);
  const peak = Math.max(...player.samples);
  expect(peak).toBeLessThanOrEqual(5);
  expect(peak).toBeGreaterThanOrEqual(1);
  // One Job (so one pod) per bot: every bot was played exactly once.
  const perBot = new Map<string, number>();
  for (const env of player.played.values()) perBot.set(botIdOfEnv(env)!, (perBot.get(botIdOfEnv(env)!) ?? 0) + 1);
  expect(ids.filter((id) => perBot.get(id) !== 1)).toEqual([]);
  process.stdout.write(
    `k8s 30 bots / limit 5 / 2 workers: peak Jobs with a live pod ${peak} over ${player.samples.length} samples, ` +
      `${player.played.size} pods played for ${perBot.size} bots; afterwards ${JSON.stringify(await everything())}\n`,
  );
});

it('image-pull lock: 10 bots of a new tag across 2 workers start one Job until its pod runs; a dead holder releases the lock', async () => {
  const tag = `slow-pull-${Date.now()}`;
  t = await startTestFleet(
    {
      PLATFORM_PRIORITY: 'k8s',
      ...peer.env,
      K8S_BOT_LIMIT: '10',
      K8S_IMAGE_TAG: tag,
      K8S_IMAGE_PULL_LOCK_ENABLED: 'true',
      K8S_START_TIMEOUT_MS: '120000',
      ...S3,
    },
    { api: true, workers: false },
  );
  const fleet = t;
  const jobsSeen = async () =>
    (await peer.batch.listNamespacedJob({ namespace: NAMESPACE, labelSelector: 'app=meeboter-bot' })).items;
  const podsRunning = async () =>
    (await peer.pods('app=meeboter-bot')).filter((pod) => pod.status?.phase === 'Running').length;

  // First the holder dies: one worker takes the first bot, its Job's pod is slow to run, and the worker is killed.
  const first = spawnFleetProcess('worker', { ...fleet.env, PORT: '0' });
  workers.push(first);
  const a = (await fleet.request('POST', '/api/bots', { body: { meeting: meetings.meet } })).body.id as string;
  await waitFor(async () => (await jobsSeen()).length === 1, 'the first Job');
  await first.kill('SIGKILL');
  // The lock's expiry frees it; the next holder is a worker that never saw it taken.
  const lockKey = `${fleet.env.REDIS_PREFIX}:k8s-pull:lock:registry.test/meeboter/meeboter-google-meet-bot:${tag}`;
  expect(await fleet.fleet.redis.exists(lockKey)).toBe(1);
  await waitFor(
    async () => (await fleet.fleet.redis.exists(lockKey)) === 0,
    "the dead holder's lock to expire",
    60_000,
  );
  await peer.batch.deleteNamespacedJob({
    name: (await jobsSeen())[0].metadata!.name!,
    namespace: NAMESPACE,
    propagationPolicy: 'Background',
  });
  await waitFor(async () => (await jobsSeen()).length === 0 && (await podsRunning()) === 0, 'the first Job to be gone');

  // A new tag's first pull: 10 bots, 2 workers. Until a pod of the tag runs, there is one Job.
  const newTag = `${tag}-b`;
  const env = { ...fleet.env, K8S_IMAGE_TAG: newTag, PORT: '0' };
  const ids = (
    await Promise.all(
      Array.from({ length: 10 }, () => fleet.request('POST', '/api/bots', { body: { meeting: meetings.meet } })),
    )
  ).map((r) => r.body.id as string);
  workers.push(spawnFleetProcess('worker', env), spawnFleetProcess('worker', env));
  const samples: Array<{ jobs: number; running: number }> = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const jobs = (await jobsSeen()).filter((job) =>
        job.spec?.template.spec?.containers[0].image?.endsWith(`:${newTag}`),
      ).length;
      samples.push({ jobs, running: await podsRunning() });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  await waitFor(
    async () =>
      (await jobsSeen()).filter((job) => job.spec?.template.spec?.containers[0].image?.endsWith(`:${newTag}`))
        .length === 10,
    'all 10 Jobs of the new tag',
    240_000,
    250,
  );
  sampling = false;
  await sampler;
  const beforeRun = samples.filter((sample) => sample.running === 0);
  expect(beforeRun.length).toBeGreaterThan(0);
  expect(Math.max(...beforeRun.map((sample) => sample.jobs))).toBe(1);
  for (const id of [a, ...ids]) await fleet.request('DELETE', `/api/bots/${id}`);
  await waitFor(async () => (await jobsSeen()).length === 0, 'the Jobs to be deleted', 120_000);
  process.stdout.write(
    `k8s image-pull lock (${SLOW_PULL_MS} ms pull): ${beforeRun.length} samples before the first pod ran, at most ` +
      `${Math.max(...beforeRun.map((sample) => sample.jobs))} Job then; holder killed, lock released\n`,
  );
});
