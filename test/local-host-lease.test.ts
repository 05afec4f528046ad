import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  FleetProcess,
  meetings,
  spawnFleetProcess,
  startTestFleet,
  TestFleet,
  waitFor,
  whilePaused,
} from './support/fleet';
import { botProcessGroups, killBotProcessesIn } from './support/processes';

/**
 * An ended `local` bot's unit of capacity is freed only once its own host stopped its process, or once that
 * host counts as gone for good (its liveness lease lapsed, LOCAL_HOST_GONE_AFTER_MS after its last renewal).
 * Two worker processes play hosts A and B of one fleet with a limit of one bot; host A's worker is SIGKILLed
 * (its bot processes run on) and host B takes over the held job, which may not stop A's process.
 */
jest.setTimeout(300_000);

const HOST_A_GONE_AFTER_MS = 30_000;
let t: TestFleet;
const workers: FleetProcess[] = [];
const dirA = mkdtempSync(path.join(os.tmpdir(), 'meeboter-lease-a-'));

beforeAll(async () => {
  t = await startTestFleet(
    {
      PLATFORM_PRIORITY: 'local',
      LOCAL_BOT_LIMIT: '1',
      SWEEP_INTERVAL_MS: '1000',
      LEAVE_GRACE_MS: '1000',
      LOCAL_QUEUE_TIMEOUT_MS: '600000',
      GLOBAL_QUEUE_TIMEOUT_MS: '600000',
    },
    { api: true, workers: false },
  );
});
afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.kill('SIGTERM')));
  killBotProcessesIn(dirA);
  await t.close();
});

const bot = async (id: string) => (await t.request('GET', `/api/bots/${id}`)).body;
const counter = async (name: string) =>
  Number((await t.fleet.redis.get(`${t.env.REDIS_PREFIX}:sweeps:${name}:runs`)) ?? 0);
const startHost = (host: string, runDir: string, extra: Record<string, string> = {}) => {
  const worker = spawnFleetProcess('worker', {
    ...t.env,
    LOG_LEVEL: 'info',
    LOCAL_RUN_DIR: runDir,
    LOCAL_HOST_ID: host,
    WORKER_LOCK_DURATION_MS: '2000',
    ...extra,
  });
  workers.push(worker);
  return worker;
};
const startHostA = () => startHost('host-a', dirA, { LOCAL_HOST_GONE_AFTER_MS: String(HOST_A_GONE_AFTER_MS) });
const started = (worker: FleetProcess, what: string) =>
  waitFor(() => worker.output().includes('workers started'), what);
/** A bot that stays in the call and does not leave when asked: only a stop of its process ends that. */
const createStubborn = async () =>
  (
    await t.request('POST', '/api/bots', {
      body: { meeting: meetings.meet, metadata: { 'sim.behavior': 'ignore-leave', 'sim.durationMs': '600000' } },
    })
  ).body.id as string;
const inCallOn = (id: string, host: string) =>
  waitFor(async () => {
    const b = await bot(id);
    return b.status === 'IN_CALL' && new RegExp(`@${host}$`).test(b.platformIdentifier) ? b : null;
  }, `bot ${id} in call on ${host}`);
const adoptedElsewhere = (id: string) =>
  waitFor(
    async () =>
      (await t.request('GET', `/api/bots/${id}/events`)).body.data.some(
        (e: { type: string; data?: { state?: string } }) =>
          e.type === 'attempt.adopted' && e.data?.state === 'elsewhere',
      ),
    `host B to hold bot ${id} from host A`,
  );
const leaveAndEnd = async (id: string) => {
  expect((await t.request('POST', `/api/bots/${id}/leave`)).status).toBe(200);
  await waitFor(async () => ['ENDED', 'FATAL'].includes((await bot(id)).status), `bot ${id} to end`);
};

it('an ended bot of a host without workers keeps its capacity until that host stops its process; a host gone for good frees it', async () => {
  let hostA = startHostA();
  await started(hostA, 'host A to start');
  const first = await createStubborn();
  await inCallOn(first, 'host-a');
  const hostB = startHost('host-b', mkdtempSync(path.join(os.tmpdir(), 'meeboter-lease-b-')));
  await started(hostB, 'host B to start');

  // Host A's worker dies; its bot process runs on, and host B takes over the held job.
  await hostA.kill('SIGKILL');
  await adoptedElsewhere(first);
  const second = await createStubborn();
  await leaveAndEnd(first);

  // While host A has no worker, the first bot's process runs and its unit stays held: the second bot waits.
  const both = new Set([first, second]);
  // (waitFor retries a check that throws, so what a check sees is collected and asserted afterwards)
  const seen: string[] = [];
  const since = await counter('reconcile-local');
  await waitFor(async () => {
    seen.push(`${botProcessGroups(both).size} live, second ${(await bot(second)).status}`);
    return (await counter('reconcile-local')) >= since + 5;
  }, 'five reconciliation intervals with host A down');
  expect(new Set(seen)).toEqual(new Set(['1 live, second QUEUED']));
  expect(botProcessGroups(new Set([first])).size).toBe(1);

  // Host A returns: one of its workers stops the process, and only then does the second bot get the unit.
  hostA = startHostA();
  await started(hostA, 'host A to return');
  const liveCounts = new Set<number>();
  await waitFor(async () => {
    liveCounts.add(botProcessGroups(both).size);
    return (await bot(second)).status === 'IN_CALL';
  }, 'the second bot in call once host A stopped the first');
  expect(Math.max(...liveCounts)).toBe(1);
  expect(botProcessGroups(new Set([first])).size).toBe(0);
  expect(botProcessGroups(new Set([second])).size).toBe(1);
  await leaveAndEnd(second);
  await waitFor(() => botProcessGroups(new Set([second])).size === 0, 'the second bot’s process to be stopped');

  // Host A is gone for good: its worker and its bot processes die. Its ended bot keeps the unit while A's
  // lease lives, and frees it once the lease lapsed.
  // (host B paused meanwhile, so that host A takes the next bot)
  const third = await whilePaused(t, hostB, async () => {
    const id = await createStubborn();
    await inCallOn(id, 'host-a');
    return id;
  });
  await hostA.kill('SIGKILL');
  killBotProcessesIn(dirA);
  await adoptedElsewhere(third);
  const fourth = await createStubborn();
  await leaveAndEnd(third);
  const leaseOfA = `${t.env.REDIS_PREFIX}:local:local:host-lease:host-a`;
  // The status first: a lease still alive after it was read was alive when it was read (nothing renews it).
  const whileLeased = new Set<string>();
  await waitFor(
    async () => {
      const status = (await bot(fourth)).status;
      const leaseLives = (await t.fleet.redis.exists(leaseOfA)) === 1;
      if (leaseLives) whileLeased.add(status);
      return !leaseLives;
    },
    'host A’s lease to lapse',
    HOST_A_GONE_AFTER_MS + 30_000,
  );
  expect([...whileLeased]).toEqual(['QUEUED']);
  await inCallOn(fourth, 'host-b');
  await leaveAndEnd(fourth);
  await waitFor(() => botProcessGroups(new Set([fourth])).size === 0, 'the fourth bot’s process to be stopped');
});
