import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BotPlayer } from './support/bot-player';
import { K8sPeer, NAMESPACE, playBots, startK8sPeer } from './support/k8s';
import { SLOW_PULL_MS } from './support/kwok-stages';
import { occupyJobId } from '../queues/queue-names';
import { deploymentName } from '../src/platforms/platform';
import {
  attemptsOf as attempts,
  botOf,
  createBot,
  eventsOf as events,
  startTestFleet,
  TestFleet,
  waitFor,
  waitForStatus as waitStatus,
} from './support/fleet';

/**
 * The k8s platform inside a fleet (API and workers in this process) against a real control plane, with the
 * deploy/k8s ServiceAccount: a pod that cannot pull moves the bot on, a quota refusal is full (not failed),
 * reconciliation works both ways, and the Role allows exactly the namespace's Jobs, pods, events and Secrets.
 */
jest.setTimeout(240_000);

let peer: K8sPeer;
let player: BotPlayer | undefined;
const fleets: TestFleet[] = [];
beforeAll(async () => {
  peer = await startK8sPeer();
}, 300_000);
afterAll(() => peer?.close());
afterEach(async () => {
  await player?.stop();
  player = undefined;
  await Promise.all(fleets.splice(0).map((t) => t.close()));
});

/** k8s first, then local (the sim bot as a real process); each fleet has its own FLEET_ID, so its own Jobs. */
async function fleet(env: Record<string, string> = {}) {
  const t = await startTestFleet({
    PLATFORM_PRIORITY: 'k8s,local',
    K8S_BOT_LIMIT: '5',
    K8S_IMAGE_PULL_LOCK_ENABLED: 'false',
    LOCAL_RUN_DIR: mkdtempSync(path.join(os.tmpdir(), 'meeboter-k8s-')),
    GLOBAL_QUEUE_TIMEOUT_MS: '600000',
    ...peer.env,
    ...env,
  });
  fleets.push(t);
  return t;
}

/** The attempts of a bot whose first start try failed and whose second was deployed. */
const RETRIED_ONCE = [
  'attempt.assigned:k8s',
  'attempt.deployed:k8s',
  'attempt.start-failed:k8s',
  'attempt.retried:k8s',
  'attempt.deployed:k8s',
];

const jobsOf = async (id: string) =>
  (await peer.batch.listNamespacedJob({ namespace: NAMESPACE, labelSelector: `meeboter.io/bot-id=${id}` })).items;

it('ImagePullBackOff past the start timeout: the Job is deleted and the bot moves to local with the reason', async () => {
  const t = await fleet({ K8S_IMAGE_TAG: 'pull-fails', K8S_START_TIMEOUT_MS: '12000' });
  const id = await createBot(t);
  expect((await waitStatus(t, id, ['IN_CALL'])).platform).toBe('local');
  expect(await attempts(t, id)).toEqual([
    'attempt.assigned:k8s',
    'attempt.deployed:k8s',
    'attempt.timed-out:k8s',
    'attempt.assigned:local',
    'attempt.deployed:local',
  ]);
  const timedOut = (await events(t, id)).find((e) => e.type === 'attempt.timed-out');
  expect(timedOut.reason).toMatch(
    /^still starting after 12000 ms \(ImagePullBackOff: Back-off pulling image "registry\.test\/meeboter\/meeboter-zoom-bot:pull-fails"\)$/,
  );
  await waitFor(
    async () => (await jobsOf(id)).length === 0 && (await peer.pods(`meeboter.io/bot-id=${id}`)).length === 0,
    'the Job and its pod to be gone',
  );
  process.stdout.write(`k8s ImagePullBackOff: ${timedOut.reason}\n`);
});

it("a Job whose pod fails before it runs is retried as a new Job under the next try's name, and the bot completes on k8s", async () => {
  const t = await fleet({ K8S_IMAGE_TAG: 'start-fails-once' });
  player = playBots(peer);
  const id = await createBot(t, { metadata: { 'sim.durationMs': '1500' } });
  const ended = await waitStatus(t, id, ['ENDED', 'FATAL']);
  expect(ended).toMatchObject({
    status: 'ENDED',
    endReason: 'COMPLETED',
    platform: 'k8s',
    platformIdentifier: `mb-${id}-k8s--1-0`,
  });
  expect(await attempts(t, id)).toEqual(RETRIED_ONCE);
  const all = await events(t, id);
  const failed = all.find((e) => e.type === 'attempt.start-failed');
  expect(failed.data).toEqual({ platform: 'k8s', try: 0, identifier: `mb-${id}-k8s-0` });
  expect(failed.reason).toMatch(
    new RegExp(`^container mb-${id}-k8s-0 stopped before it ran: .*exit code 128 \\(StartError\\)`),
  );
  expect(all.find((e) => e.type === 'attempt.retried').data).toEqual({
    platform: 'k8s',
    try: 1,
    name: `mb-${id}-k8s--1`,
  });
  // The failed try's Job is deleted rather than left for its TTL, and the second one once the bot ended.
  await waitFor(
    async () => (await jobsOf(id)).length === 0 && (await peer.pods(`meeboter.io/bot-id=${id}`)).length === 0,
    'both Jobs and their pods to be gone',
  );
  process.stdout.write(`k8s start retry: ${failed.reason}\n`);
});

it('a ResourceQuota of pods: 2 with K8S_BOT_LIMIT=5: the third bot goes to local at once, k8s full and not failed', async () => {
  peer.plane.kubectl(
    ['-n', NAMESPACE, 'apply', '-f', '-'],
    undefined,
    'apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: test-pods}\nspec:\n  hard: {pods: "2"}\n',
  );
  try {
    // The quota controller must have counted before the test relies on its refusals.
    await waitFor(
      () =>
        JSON.parse(peer.plane.kubectl(['-n', NAMESPACE, 'get', 'resourcequota', 'test-pods', '-o', 'json'])).status
          ?.hard?.pods === '2',
      'the quota to be active',
    );
    const t = await fleet();
    const first = await createBot(t);
    const second = await createBot(t);
    for (const id of [first, second])
      await waitFor(
        async () => (await peer.pods(`meeboter.io/bot-id=${id}`))[0]?.status?.phase === 'Running',
        'a pod to run',
      );
    const third = await createBot(t);
    expect((await waitStatus(t, third, ['IN_CALL'])).platform).toBe('local');
    expect(await attempts(t, third)).toEqual([
      'attempt.assigned:k8s',
      'attempt.full:k8s',
      'attempt.assigned:local',
      'attempt.deployed:local',
    ]);
    const full = (await events(t, third)).find((e) => e.type === 'attempt.full');
    expect(full.reason).toMatch(/exceeded quota: test-pods, requested: pods=1, used: pods=2, limited: pods=2/);
    expect((await t.fleet.repo.findById(third))!.excludedPlatforms).toEqual([]);
    expect(await jobsOf(third)).toEqual([]);
    process.stdout.write(`k8s quota: third bot ${(await attempts(t, third)).join(',')}; reason: ${full.reason}\n`);
    for (const id of [first, second, third]) await t.request('DELETE', `/api/bots/${id}`);
    await waitFor(async () => (await peer.pods('app=meeboter-bot')).length === 0, 'the pods to be gone');
  } finally {
    peer.plane.kubectl(['-n', NAMESPACE, 'delete', 'resourcequota', 'test-pods']);
  }
});

it("a bot waiting for another bot's image pull holds no deploy slot: with DEPLOYMENT_QUEUE_MAX_CONCURRENT=1 a local bot deploys meanwhile", async () => {
  const t = await fleet({
    K8S_BOT_LIMIT: '2',
    K8S_IMAGE_PULL_LOCK_ENABLED: 'true',
    K8S_IMAGE_TAG: `slow-pull-${Date.now()}`,
    K8S_START_TIMEOUT_MS: '120000',
    DEPLOYMENT_QUEUE_MAX_CONCURRENT: '1',
  });
  const first = await createBot(t);
  await waitFor(
    async () => (await attempts(t, first)).includes('attempt.deployed:k8s'),
    "the first bot's Job, its pod pulling",
  );
  const second = await createBot(t);
  await waitStatus(t, second, ['DEPLOYING']); // claimed, and waiting for the first pull
  const third = await createBot(t); // k8s is full: to local
  expect((await waitStatus(t, third, ['IN_CALL'])).platform).toBe('local');
  await waitFor(
    async () => (await attempts(t, second)).includes('attempt.deployed:k8s'),
    "the second bot's Job once the image is pulled",
    120_000,
  );
  const deployedAt = async (id: string) =>
    new Date((await events(t, id)).find((e) => e.type === 'attempt.deployed').at).getTime();
  // The local deploy did not wait for the pull: it came first, although the second bot took the one slot first.
  const [local, pulled] = [await deployedAt(third), await deployedAt(second)];
  expect(local).toBeLessThan(pulled);
  expect(await attempts(t, second)).toEqual(['attempt.assigned:k8s', 'attempt.deployed:k8s']);
  for (const id of [first, second, third]) await t.request('DELETE', `/api/bots/${id}`);
  await waitFor(async () => (await peer.pods('app=meeboter-bot')).length === 0, 'the pods to be gone');
  process.stdout.write(
    `k8s pull wait outside the deploy slot: local deployed ${pulled - local} ms before the waiting k8s bot\n`,
  );
});

it("a bot that waited for another bot's image pull gets its whole start timeout from its own Job's creation", async () => {
  // One pull is within the start timeout; the waiter's wait for the first pull plus its own pull is not.
  const t = await fleet({
    K8S_BOT_LIMIT: '2',
    K8S_IMAGE_PULL_LOCK_ENABLED: 'true',
    K8S_IMAGE_TAG: `slow-pull-${Date.now()}`,
    K8S_START_TIMEOUT_MS: String(SLOW_PULL_MS + 6000),
  });
  player = playBots(peer, { inCallMs: Infinity });
  const first = await createBot(t);
  await waitFor(
    async () => (await attempts(t, first)).includes('attempt.deployed:k8s'),
    "the first bot's Job, its pod pulling",
  );
  const second = await createBot(t); // waits for the first pull, then its own pod pulls (kwok: it takes as long)
  expect((await waitStatus(t, first, ['IN_CALL'])).platform).toBe('k8s');
  expect((await waitStatus(t, second, ['IN_CALL'])).platform).toBe('k8s');
  expect(await attempts(t, second)).toEqual(['attempt.assigned:k8s', 'attempt.deployed:k8s']);
  for (const id of [first, second]) await t.request('DELETE', `/api/bots/${id}`);
  await waitFor(async () => (await peer.pods('app=meeboter-bot')).length === 0, 'the pods to be gone');
});

it('reconciliation: a Job deleted with kubectl ends its live bot CONTAINER_LOST', async () => {
  const t = await fleet({ SWEEP_INTERVAL_MS: '500', PLATFORM_PRIORITY: 'k8s' });
  player = playBots(peer, { inCallMs: Infinity });
  const id = await createBot(t);
  const job = (await waitStatus(t, id, ['IN_CALL'])).platformIdentifier as string;
  peer.plane.kubectl(['-n', NAMESPACE, 'delete', 'job', job]);
  expect(await waitStatus(t, id, ['FATAL', 'ENDED'])).toMatchObject({ status: 'FATAL', endReason: 'CONTAINER_LOST' });
  // The status event is written beside the bot's own update: wait for it too.
  const fatal = await waitFor(
    async () => (await events(t, id)).find((e) => e.type === 'status' && e.status === 'FATAL'),
    'the FATAL event',
  );
  const lost = fatal.message;
  expect(lost).toMatch(new RegExp(`^container ${job} is gone: Kubernetes does not know the Job`));
  await waitFor(async () => (await t.fleet.placement.stats()).platforms[0].active === 0, 'capacity to be freed');
  process.stdout.write(`k8s reconciliation: ${lost}\n`);
});

it('reconciliation: a Job deleted after its job parked but before its bot reported is a failed start, retried', async () => {
  const t = await fleet({ SWEEP_INTERVAL_MS: '500', PLATFORM_PRIORITY: 'k8s' });
  // No bot player: the pod runs (so the occupy job parks), its bot never reports (so it stays DEPLOYING).
  const id = await createBot(t);
  const queue = t.fleet.queues.platforms.get('k8s')!;
  const parked = () =>
    waitFor(async () => (await queue.getJobState(occupyJobId(id, 'k8s'))) === 'delayed', 'its occupy job to park');
  await parked();
  const job = (await botOf(t, id)).platformIdentifier as string;
  peer.plane.kubectl(['-n', NAMESPACE, 'delete', 'job', job]);
  // Far sooner than DEPLOY_TIMEOUT_MS (15 minutes), the only other end such a bot had.
  await waitFor(
    async () => (await attempts(t, id)).filter((a) => a === 'attempt.deployed:k8s').length === 2,
    'the next start try deployed',
  );
  expect(await attempts(t, id)).toEqual(RETRIED_ONCE);
  const failed = (await events(t, id)).find((e) => e.type === 'attempt.start-failed');
  expect(failed.reason).toMatch(new RegExp(`^container ${job} stopped before it ran`));
  await parked();
  const retried = await botOf(t, id);
  expect(retried.status).toBe('DEPLOYING');
  expect(retried.platformIdentifier).toMatch(new RegExp(`^${deploymentName(id, 'k8s', 1)}-`)); // the Job of try 1
  await t.request('DELETE', `/api/bots/${id}`);
  await waitFor(async () => (await jobsOf(id)).length === 0, 'its Jobs to be gone');
});

it('reconciliation: a Job of an ended bot is deleted', async () => {
  const t = await fleet({ SWEEP_INTERVAL_MS: '500' });
  const id = await createBot(t, { joinAt: new Date(Date.now() + 3600_000).toISOString() });
  expect((await t.request('DELETE', `/api/bots/${id}`)).body).toMatchObject({
    status: 'ENDED',
    endReason: 'CANCELLED',
  });
  // A Job of this fleet for that bot, as an earlier crash might have left behind.
  const labels = {
    app: 'meeboter-bot',
    'meeboter.io/fleet': t.fleet.fleetId,
    'meeboter.io/bot-id': id,
    'meeboter.io/deployment': `mb-${id}-k8s`,
    'meeboter.io/attempt': '0',
  };
  await peer.batch.createNamespacedJob({
    namespace: NAMESPACE,
    body: {
      metadata: { name: `mb-${id}-k8s-0`, labels },
      spec: {
        backoffLimit: 0,
        template: {
          metadata: { labels },
          spec: { restartPolicy: 'Never', containers: [{ name: 'bot', image: 'registry.test/x:1' }] },
        },
      },
    },
  });
  await waitFor(async () => (await jobsOf(id)).length === 0, 'the leftover Job to be deleted');
  await waitFor(async () => (await peer.pods(`meeboter.io/bot-id=${id}`)).length === 0, 'its pod to be gone');
});

describe('the deploy/k8s ServiceAccount (kubectl auth can-i)', () => {
  const canI = (...args: string[]) => {
    try {
      return peer.plane.kubectl(['auth', 'can-i', ...args], peer.serviceAccountKubeconfig).trim();
    } catch (error) {
      return String((error as { stdout?: string }).stdout ?? '').trim();
    }
  };

  it('can do what the adapter does in its namespace, and no more', () => {
    const allowed = [
      ['create', 'jobs.batch'],
      ['get', 'jobs.batch'],
      ['list', 'jobs.batch'],
      ['patch', 'jobs.batch'],
      ['delete', 'jobs.batch'],
      ['create', 'secrets'],
      ['list', 'pods'],
      ['list', 'events'],
    ];
    for (const [verb, resource] of allowed)
      expect(`${verb} ${resource}: ${canI(verb, resource, '-n', NAMESPACE)}`).toBe(`${verb} ${resource}: yes`);
    const denied = [
      ['list', 'nodes'],
      ['get', 'secrets', '-n', NAMESPACE],
      ['list', 'secrets', '-n', NAMESPACE],
      ['delete', 'pods', '-n', NAMESPACE],
      ['create', 'jobs.batch', '-n', 'default'],
      ['list', 'pods', '-n', 'default'],
      ['list', 'jobs.batch', '-n', 'kube-system'],
      ['create', 'namespaces'],
      ['update', 'roles.rbac.authorization.k8s.io', '-n', NAMESPACE],
    ];
    for (const args of denied) expect(`${args.join(' ')}: ${canI(...args)}`).toBe(`${args.join(' ')}: no`);
    process.stdout.write(`k8s RBAC: ${allowed.length} verbs allowed in ${NAMESPACE}, ${denied.length} checks denied\n`);
  });
});
