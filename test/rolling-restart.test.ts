import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  eventsOf,
  FleetProcess,
  meetings,
  pidOf,
  spawnFleetProcess,
  startTestFleet,
  TestFleet,
  waitFor,
} from './support/fleet';
import { botProcessGroups, isAlive } from './support/processes';

/**
 * A rolling restart of the workers, as a Deployment's rollout or `docker compose up -d` does it: a new
 * worker starts, the old one gets SIGTERM while it holds bots in call, twice over. The bots' containers
 * (`local` processes here, on one host) keep running, each bot is adopted by the next worker and never
 * deployed again, and the bots end normally afterwards. The lock and the sweep interval are far longer than
 * any wait below, so only a job handed back at SIGTERM, not one left to stall or re-held by recovery, can be
 * adopted in time.
 */
jest.setTimeout(300_000);

const BOTS = 4;
let t: TestFleet;
const workers: FleetProcess[] = [];
let workerEnv: Record<string, string>;

beforeAll(async () => {
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'local', LOCAL_BOT_LIMIT: String(BOTS), LOG_LEVEL: 'info' },
    { api: true, workers: false },
  );
  workerEnv = {
    ...t.env,
    LOCAL_RUN_DIR: mkdtempSync(path.join(os.tmpdir(), 'meeboter-rolling-')),
    LOCAL_HOST_ID: 'rolling-host',
    WORKER_LOCK_DURATION_MS: '600000',
    // nor can recovery re-hold a bot that was dropped (it runs as a worker starts, then only after this)
    SWEEP_INTERVAL_MS: '600000',
  };
});
afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.kill('SIGTERM')));
  await t.close();
});

const bot = async (id: string) => (await t.request('GET', `/api/bots/${id}`)).body;
const events = (id: string) => eventsOf(t, id);
const count = async (id: string, type: string) => (await events(id)).filter((e) => e.type === type).length;

async function startWorker(): Promise<FleetProcess> {
  const worker = spawnFleetProcess('worker', workerEnv);
  workers.push(worker);
  await waitFor(() => worker.output().includes('workers started'), 'a worker to start');
  return worker;
}

/** SIGTERM, as a rollout sends it: the exit code. */
async function stop(worker: FleetProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => worker.child.once('exit', (code) => resolve(code)));
  worker.child.kill('SIGTERM');
  return exited;
}

it('workers replaced one after the other by SIGTERM while holding bots in call: adopted, never redeployed, then they end normally', async () => {
  const first = await startWorker();
  const ids: string[] = [];
  for (let i = 0; i < BOTS; i++) {
    const created = await t.request('POST', '/api/bots', {
      body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '600000' } },
    });
    expect(created.status).toBe(201);
    ids.push(created.body.id);
  }
  await waitFor(async () => (await Promise.all(ids.map(bot))).every((b) => b.status === 'IN_CALL'), 'the bots in call');
  const identifiers = new Map<string, string>();
  for (const id of ids) identifiers.set(id, (await bot(id)).platformIdentifier);

  let holder = first;
  for (const round of [1, 2]) {
    const next = await startWorker();
    expect(await stop(holder)).toBe(0);
    expect(holder.output()).toContain('shutting down gracefully');
    expect(holder.output()).not.toContain('shutdown deadline passed');
    await waitFor(
      async () => {
        for (const id of ids) if ((await count(id, 'attempt.adopted')) < round) return false;
        return true;
      },
      `round ${round}: every bot adopted by the next worker`,
      60_000,
    );
    // the same bot processes, still running, one each
    const groups = botProcessGroups(new Set(ids));
    for (const id of ids) {
      expect((await bot(id)).status).toBe('IN_CALL');
      expect((await bot(id)).platformIdentifier).toBe(identifiers.get(id));
      expect(isAlive(pidOf(identifiers.get(id)!))).toBe(true);
      expect(groups.get(id)?.size).toBe(1);
    }
    holder = next;
  }

  for (const id of ids) expect((await t.request('POST', `/api/bots/${id}/leave`)).status).toBe(200);
  const ended = await waitFor(async () => {
    const bots = await Promise.all(ids.map(bot));
    return bots.every((b) => ['ENDED', 'FATAL'].includes(b.status)) ? bots : null;
  }, 'the bots to end');
  expect(ended.map((b) => `${b.status}/${b.endReason}`)).toEqual(ids.map(() => 'ENDED/LEFT'));
  for (const id of ids) {
    expect(await count(id, 'attempt.deployed')).toBe(1);
    expect(await count(id, 'attempt.adopted')).toBe(2);
  }
  process.stdout.write(
    `rolling restart: ${BOTS} bots in call through 2 worker replacements, each deployed once and adopted twice, all ENDED/LEFT\n`,
  );
});
