import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, meetings, startTestFleet, TestFleet, uniqueName, waitFor } from './support/fleet';

/**
 * Two fleets (different REDIS_PREFIX, so different fleet ids) on one `local` host (one run directory and host
 * id) and one `sim` host, reconciling often: each runs its bots to COMPLETED and neither stops the other's
 * containers (before fleet scoping, each fleet's reconciliation stopped the other's as "bot unknown").
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
        const res = await fleet.request('POST', '/api/bots', { body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '1500' } } });
        created.push(res.body.id as string);
      }
      return created;
    }),
  );
  const outcomes = await Promise.all(
    fleets.map((fleet, index) =>
      waitFor(async () => {
        const bots = await Promise.all(ids[index].map(async (id) => (await fleet.request('GET', `/api/bots/${id}`)).body));
        return bots.every((b) => b.status === 'ENDED' || b.status === 'FATAL') ? bots : null;
      }, `fleet ${index}'s bots to end`, 180_000),
    ),
  );
  for (const bots of outcomes) {
    expect(bots.map((b) => `${b.status}/${b.endReason}`)).toEqual(Array(20).fill('ENDED/COMPLETED'));
    // Both platforms were used, so both hosts were shared while both fleets reconciled.
    expect(new Set(bots.map((b) => b.platform))).toEqual(new Set(['local', 'sim']));
  }
});
