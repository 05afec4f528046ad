import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { botProcessGroups } from './support/processes';
import { cleanup, meetings, startTestFleet, TestFleet, uniqueName, waitFor } from './support/fleet';

/**
 * Two fleets (different REDIS_PREFIX and databases, so different fleet ids) on one `local` host (one run
 * directory and host id) and one `sim` host, reconciling often: each runs its bots to COMPLETED and neither
 * stops the other's containers (before fleet scoping, each fleet's reconciliation stopped the other's as "bot
 * unknown"). Then two fleets set up alike, with default FLEET_ID, LOCAL_RUN_DIR and LOCAL_HOST_ID and even the
 * same REDIS_PREFIX, which share nothing configured (each its own Redis database and MongoDB database): before
 * each fleet kept an identity of its own, each stopped the other's bots.
 */
jest.setTimeout(240_000);

const shared = {
  PLATFORM_PRIORITY: 'local,sim',
  LOCAL_BOT_LIMIT: '3',
  LOCAL_RUN_DIR: mkdtempSync(path.join(os.tmpdir(), 'meeboter-shared-host-')),
  LOCAL_HOST_ID: 'shared-host',
  SIM_HOST: uniqueName('mbtest_simhost'),
  SWEEP_INTERVAL_MS: '300',
};
const fleets: TestFleet[] = [];

beforeAll(async () => {
  fleets.push(await startTestFleet(shared), await startTestFleet(shared));
});
afterAll(async () => {
  for (const fleet of fleets) await fleet.close();
  await cleanup(fleets[0].urls, shared.SIM_HOST);
});

it('each of two fleets on one local and one sim host runs 20 bots to COMPLETED', async () => {
  const ids = await Promise.all(
    fleets.map(async (fleet) => {
      const created = [];
      for (let i = 0; i < 20; i++) {
        const res = await fleet.request('POST', '/api/bots', {
          body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '1500' } },
        });
        created.push(res.body.id as string);
      }
      return created;
    }),
  );
  const outcomes = await Promise.all(
    fleets.map((fleet, index) =>
      waitFor(
        async () => {
          const bots = await Promise.all(
            ids[index].map(async (id) => (await fleet.request('GET', `/api/bots/${id}`)).body),
          );
          return bots.every((b) => b.status === 'ENDED' || b.status === 'FATAL') ? bots : null;
        },
        `fleet ${index}'s bots to end`,
        180_000,
      ),
    ),
  );
  for (const bots of outcomes) {
    expect(bots.map((b) => `${b.status}/${b.endReason}`)).toEqual(Array(20).fill('ENDED/COMPLETED'));
    // Both platforms were used, so both hosts were shared while both fleets reconciled.
    expect(new Set(bots.map((b) => b.platform))).toEqual(new Set(['local', 'sim']));
  }
});

it('two fleets with default settings and one REDIS_PREFIX, each on its own Redis and MongoDB database, never stop each other’s local bots', async () => {
  const peers = fleets[0].urls;
  const prefix = uniqueName('mbtest_default');
  const redisDb = (n: number) => {
    const url = new URL(peers.redisUrl);
    url.pathname = `/${n}`;
    return url.toString();
  };
  // Nothing about identity is set: FLEET_ID, LOCAL_RUN_DIR and LOCAL_HOST_ID take their defaults.
  const alike = { PLATFORM_PRIORITY: 'local', LOCAL_BOT_LIMIT: '3', SWEEP_INTERVAL_MS: '300', REDIS_PREFIX: prefix };
  const twins = [
    await startTestFleet({ ...alike, REDIS_URL: redisDb(3) }),
    await startTestFleet({ ...alike, REDIS_URL: redisDb(4) }),
  ];
  // the default run directory is named after REDIS_PREFIX, so here both fleets share it
  const runDir = path.join(os.tmpdir(), `meeboter-${prefix}-local`);
  try {
    const [a, b] = twins.map((twin) => twin.fleet.fleetId);
    expect(a).not.toBe(b);
    for (const id of [a, b]) expect(id).toMatch(new RegExp(`^${prefix}-[0-9a-f]{12}$`));

    const ids = await Promise.all(
      twins.map(async (twin) => {
        const created: string[] = [];
        for (let i = 0; i < 3; i++) {
          const res = await twin.request('POST', '/api/bots', {
            body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '30000' } },
          });
          expect(res.status).toBe(201);
          created.push(res.body.id);
        }
        return created;
      }),
    );
    const statuses = async (index: number) =>
      Promise.all(
        ids[index].map(async (id) => (await twins[index].request('GET', `/api/bots/${id}`)).body.status as string),
      );
    await waitFor(
      async () => (await Promise.all([0, 1].map(statuses))).flat().every((status) => status === 'IN_CALL'),
      'all six bots in call',
      120_000,
    );
    // both fleets' bots run with the same host id, their pid files side by side in the one run directory
    for (const [index, twin] of twins.entries()) {
      for (const id of ids[index]) {
        expect((await twin.request('GET', `/api/bots/${id}`)).body.platformIdentifier).toMatch(
          new RegExp(`^\\d+@${os.hostname()}$`),
        );
      }
    }
    expect(readdirSync(runDir).filter((file) => file.endsWith('.pid')).length).toBeGreaterThanOrEqual(6);

    // Both fleets reconcile their local host ten times while all six bots run: nothing is stopped.
    const runs = (twin: TestFleet) => twin.fleet.redis.get(`${prefix}:sweeps:reconcile-local:runs`).then(Number);
    const start = await Promise.all(twins.map(runs));
    await waitFor(
      async () => (await Promise.all(twins.map(runs))).every((n, i) => n >= start[i] + 10),
      'ten reconciliations in each fleet',
      60_000,
    );
    expect((await Promise.all([0, 1].map(statuses))).flat()).toEqual(Array(6).fill('IN_CALL'));
    expect(botProcessGroups(new Set(ids.flat())).size).toBe(6);

    const ends = await Promise.all(
      twins.map((twin, index) =>
        waitFor(
          async () => {
            const bots = await Promise.all(
              ids[index].map(async (id) => (await twin.request('GET', `/api/bots/${id}`)).body),
            );
            return bots.every((bot) => bot.status === 'ENDED' || bot.status === 'FATAL')
              ? bots.map((bot) => `${bot.status}/${bot.endReason}`)
              : null;
          },
          `fleet ${index}'s bots to end`,
          120_000,
        ),
      ),
    );
    expect(ends.flat()).toEqual(Array(6).fill('ENDED/COMPLETED'));
  } finally {
    for (const twin of twins) await twin.close();
    rmSync(runDir, { recursive: true, force: true });
  }
});
