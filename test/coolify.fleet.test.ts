import { createSlotRecords, SlotRecord } from '../src/platforms/coolify/slot.records';
import { CoolifyServer } from './support/coolify-server';
import { startCoolifyFleet } from './support/coolify';
import { meetings, TestFleet, waitFor } from './support/fleet';

/**
 * A whole fleet (API and workers in this process) with `coolify` first and `sim` as its fallback. Each bot
 * in a slot runs the sim bot with the env its slot received. Every end a placed bot can take gives its slot
 * back to the pool, and GET /api/bots/pool-stats follows the slot records throughout.
 */
jest.setTimeout(180_000);

let t: TestFleet;
let coolify: CoolifyServer;
beforeAll(async () => {
  ({ coolify, t } = await startCoolifyFleet({
    PLATFORM_PRIORITY: 'coolify,sim',
    COOLIFY_MIN_IDLE_SLOTS: '1',
    SWEEP_INTERVAL_MS: '300',
    DEPLOY_TIMEOUT_MS: '16000',
    LEAVE_GRACE_MS: '1000',
  }));
});
afterAll(async () => {
  await t.close();
  await coolify.close();
});

const records = () => createSlotRecords(t.fleet.mongo, t.fleet.fleetId).all();
const create = async (metadata: Record<string, string>) => {
  const res = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, metadata } });
  expect(res.status).toBe(201);
  return res.body.id as string;
};
const get = async (id: string) => (await t.request('GET', `/api/bots/${id}`)).body;
const waitStatus = (id: string, statuses: string[], timeoutMs?: number) =>
  waitFor(
    async () => {
      const bot = await get(id);
      return statuses.includes(bot.status) ? bot : null;
    },
    `bot ${id} to reach ${statuses.join('/')}`,
    timeoutMs,
  );
/**
 * IN_CALL and deployed: a bot in a slot may report IN_CALL before the adapter's next poll saw its deployment
 * finish, which is when the fleet records the identifier.
 */
const waitInCall = (id: string) =>
  waitFor(async () => {
    const bot = await get(id);
    return bot.status === 'IN_CALL' && bot.platformIdentifier && bot;
  }, `bot ${id} to be IN_CALL and deployed`);
/** The application of the slot a bot runs in (its identifier is `<deployment name>@<slot>`). */
const slotApplication = (bot: { platformIdentifier: string }) =>
  [...coolify.applications.values()].find((app) => app.name === bot.platformIdentifier.split('@')[1])!;
const allIdle = () =>
  waitFor(async () => {
    const all = await records();
    return all.length > 0 && all.every((r) => r.state === 'IDLE') && all;
  }, 'every slot to be IDLE');

/** pool-stats, checked against the slot records read just before and after it (equal when nothing moved). */
async function poolStatsMatchRecords() {
  return waitFor(async () => {
    const before = counts(await records());
    const stats = (await t.request('GET', '/api/bots/pool-stats')).body;
    const after = counts(await records());
    if (JSON.stringify(before) !== JSON.stringify(after)) return null;
    expect(stats).toMatchObject({ ...before, queueLength: expect.any(Number) });
    expect(stats.byMeetingPlatform.zoom).toMatchObject(before);
    return stats;
  }, 'pool-stats while the slots stand still');
}
function counts(all: SlotRecord[]) {
  const of = (state: string) => all.filter((r) => r.state === state).length;
  return { total: all.length, idle: of('IDLE'), starting: of('STARTING'), busy: of('BUSY'), error: of('ERROR') };
}

beforeAll(async () => {
  // The first recovery pass warms the pool: one idle zoom slot.
  await waitFor(async () => (await records()).some((r) => r.state === 'IDLE'), 'a warm slot');
});

it('completed: the bot runs in a slot with its own env, and the slot is IDLE after it ended', async () => {
  const id = await create({ 'sim.durationMs': '1000' });
  const inCall = await waitInCall(id);
  expect(inCall).toMatchObject({
    platform: 'coolify',
    platformIdentifier: expect.stringMatching(new RegExp(`^mb-${id}-coolify@mb-slot-`)),
  });
  expect((await poolStatsMatchRecords()).busy).toBe(1);
  expect((await waitStatus(id, ['ENDED', 'FATAL'])).endReason).toBe('COMPLETED');
  await allIdle();
  expect((await poolStatsMatchRecords()).busy).toBe(0);
});

it('cancelled: DELETE of a bot in a slot stops the slot and returns it to the pool', async () => {
  const id = await create({ 'sim.durationMs': '600000' });
  const inCall = await waitInCall(id);
  await t.request('DELETE', `/api/bots/${id}`);
  await allIdle();
  expect(slotApplication(inCall).status).toBe('exited:unhealthy');
});

it('left: a bot asked to leave ends LEFT and its slot is IDLE', async () => {
  const id = await create({ 'sim.durationMs': '600000' });
  await waitStatus(id, ['IN_CALL']);
  await t.request('POST', `/api/bots/${id}/leave`);
  expect((await waitStatus(id, ['ENDED', 'FATAL'])).endReason).toBe('LEFT');
  await allIdle();
});

it('heartbeat expiry: a hanging bot is FATAL HEARTBEAT_TIMEOUT and its slot is IDLE', async () => {
  const id = await create({ 'sim.behavior': 'hang' });
  expect((await waitStatus(id, ['ENDED', 'FATAL'])).endReason).toBe('HEARTBEAT_TIMEOUT');
  await allIdle();
});

it('container lost: a slot whose container died is found by reconciliation, the bot is FATAL CONTAINER_LOST, the slot IDLE', async () => {
  const id = await create({ 'sim.durationMs': '600000' });
  const inCall = await waitInCall(id);
  coolify.crash(slotApplication(inCall).uuid);
  expect((await waitStatus(id, ['ENDED', 'FATAL'])).endReason).toBe('CONTAINER_LOST');
  await allIdle();
});

it('bot error: a bot reporting FATAL BOT_ERROR frees its slot', async () => {
  const id = await create({ 'sim.behavior': 'fail-join' });
  expect((await waitStatus(id, ['ENDED', 'FATAL'])).endReason).toBe('BOT_ERROR');
  await allIdle();
});

it('deploy failure on every try: the slots go ERROR, the bot falls back to sim with the reason, recovery heals the slots', async () => {
  coolify.failDeployments = 3; // the first deploy and its COOLIFY_START_RETRIES (2) retries
  const id = await create({ 'sim.durationMs': '600000' });
  const running = await waitStatus(id, ['IN_CALL']);
  expect(running.platform).toBe('sim');
  const failed = (await t.request('GET', `/api/bots/${id}/events`)).body.data.find(
    (e: { type: string }) => e.type === 'attempt.failed',
  );
  expect(failed).toMatchObject({
    data: { platform: 'coolify' },
    reason: expect.stringMatching(/coolify slot .* failed to start: deployment \w+ failed/),
  });
  const errored = await waitFor(
    async () => (await records()).find((r) => r.lastError && /failed/.test(r.lastError)),
    'the slot that failed',
  );
  // recovery puts it back in the pool
  await allIdle();
  expect((await createSlotRecords(t.fleet.mongo, t.fleet.fleetId).get(errored._id))?.state).toBe('IDLE');
  await t.request('DELETE', `/api/bots/${id}`);
});

it('deploy timeout: a bot whose slot is still starting at DEPLOY_TIMEOUT_MS is FATAL, and the slot is IDLE once its start ends', async () => {
  coolify.stageMs = 12000; // each deployment stage: the start takes 24 s, the deploy timeout is 16 s
  try {
    const id = await create({ 'sim.durationMs': '600000' });
    await waitStatus(id, ['DEPLOYING']);
    const starting = await waitFor(async () => {
      const stats = await poolStatsMatchRecords();
      return stats.starting === 1 && stats;
    }, 'pool-stats to show the starting slot');
    expect(starting).toMatchObject({ starting: 1, busy: 0 });
    expect((await waitStatus(id, ['ENDED', 'FATAL'])).endReason).toBe('DEPLOY_TIMEOUT');
    await allIdle();
  } finally {
    coolify.stageMs = 30;
  }
});
