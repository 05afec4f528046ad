import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  FleetProcess,
  meetings,
  sleep,
  spawnFleetProcess,
  startTestFleet,
  TestFleet,
  waitFor,
  whilePaused,
} from './support/fleet';
import { botProcessGroups, killBotProcessesIn } from './support/processes';

/**
 * `local` bots exist only on the host that started them. Two worker processes play two hosts (their own
 * LOCAL_RUN_DIR and LOCAL_HOST_ID) of one fleet: neither may judge or stop the other's bots, and when one host
 * dies for good its bots end by heartbeat expiry, never as "container lost" judged from the other host.
 */
jest.setTimeout(300_000);

let t: TestFleet;
const workers: FleetProcess[] = [];
const hostDir = (name: string) => mkdtempSync(path.join(os.tmpdir(), `meeboter-${name}-`));

beforeAll(async () => {
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'local', LOCAL_BOT_LIMIT: '6', SWEEP_INTERVAL_MS: '1000', HEARTBEAT_TIMEOUT_MS: '30000' },
    { api: true, workers: false },
  );
});
afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.kill('SIGTERM')));
  await t.close();
});

const bot = async (id: string) => (await t.request('GET', `/api/bots/${id}`)).body;
const counter = async (name: string) =>
  Number((await t.fleet.redis.get(`${t.env.REDIS_PREFIX}:sweeps:${name}:runs`)) ?? 0);

async function createInCall(count: number, host: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const created = await t.request('POST', '/api/bots', {
      body: { meeting: meetings.meet, metadata: { 'sim.durationMs': '600000' } },
    });
    ids.push(created.body.id);
  }
  await waitFor(
    async () => (await Promise.all(ids.map(bot))).every((b) => b.status === 'IN_CALL'),
    `bots in call on ${host}`,
  );
  for (const id of ids) expect((await bot(id)).platformIdentifier).toMatch(new RegExp(`^\\d+@${host}$`));
  return ids;
}

it('reconciliation on either host never touches the other host’s bots; a host gone for good ends its bots by heartbeat expiry', async () => {
  const dirA = hostDir('host-a');
  const hostA = spawnFleetProcess('worker', {
    ...t.env,
    LOG_LEVEL: 'info',
    LOCAL_RUN_DIR: dirA,
    LOCAL_HOST_ID: 'host-a',
    WORKER_LOCK_DURATION_MS: '10000',
  });
  workers.push(hostA);
  await waitFor(() => hostA.output().includes('workers started'), 'host A to start');
  const onA = await createInCall(3, 'host-a');

  const hostB = spawnFleetProcess('worker', {
    ...t.env,
    LOG_LEVEL: 'info',
    LOCAL_RUN_DIR: hostDir('host-b'),
    LOCAL_HOST_ID: 'host-b',
    WORKER_LOCK_DURATION_MS: '2000',
  });
  workers.push(hostB);
  await waitFor(() => hostB.output().includes('workers started'), 'host B to start');
  // Host A paused for a moment, so that host B takes the next bots.
  const onB = await whilePaused(t, hostA, () => createInCall(3, 'host-b'));

  const all = new Set([...onA, ...onB]);
  const reconcileStart = await counter('reconcile-local');
  const recoveryStart = await counter('recovery');
  await waitFor(async () => (await counter('reconcile-local')) >= reconcileStart + 10, '10 reconciliation intervals');
  const reconciled = (await counter('reconcile-local')) - reconcileStart;
  const recovered = (await counter('recovery')) - recoveryStart;
  const bots = await Promise.all([...all].map(bot));
  expect(bots.map((b) => b.status)).toEqual(Array(6).fill('IN_CALL'));
  expect(botProcessGroups(all).size).toBe(6);
  // Recovery runs once per interval across both workers (each process tries every interval).
  expect(recovered).toBeLessThanOrEqual(reconciled + 2);
  expect(recovered).toBeGreaterThanOrEqual(Math.floor(reconciled / 2));

  // Host A dies for good, with its bot processes.
  await hostA.kill('SIGKILL');
  killBotProcessesIn(dirA);
  // Host B takes over host A's held jobs (after A's locks expire) without judging A's containers...
  await waitFor(async () => {
    const events = await Promise.all(
      onA.map(async (id) => (await t.request('GET', `/api/bots/${id}/events`)).body.data),
    );
    return events.every((list: Array<{ type: string; data?: { state?: string } }>) =>
      list.some((e) => e.type === 'attempt.adopted' && e.data?.state === 'elsewhere'),
    );
  }, 'host B to hold host A’s bots');
  expect((await Promise.all(onA.map(bot))).map((b) => b.status)).toEqual(Array(3).fill('IN_CALL'));
  // ...and they end only when their heartbeats expire.
  const ended = await waitFor(
    async () => {
      const list = await Promise.all(onA.map(bot));
      return list.every((b) => b.status === 'FATAL' || b.status === 'ENDED') ? list : null;
    },
    'host A’s bots to end',
    120_000,
  );
  expect(ended.map((b) => `${b.status}/${b.endReason}`)).toEqual(Array(3).fill('FATAL/HEARTBEAT_TIMEOUT'));
  // Host B's own bots were never touched.
  expect((await Promise.all(onB.map(bot))).map((b) => b.status)).toEqual(Array(3).fill('IN_CALL'));
  for (const id of onB) expect((await t.request('DELETE', `/api/bots/${id}`)).status).toBe(200);
  await waitFor(() => botProcessGroups(new Set(onB)).size === 0, 'host B’s bot processes to be stopped');
  await sleep(0);
});
