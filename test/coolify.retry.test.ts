import { createSlotPool } from '../src/platforms/coolify/slot.pool';
import { createSlotRecords } from '../src/platforms/coolify/slot.records';
import { CoolifyServer } from './support/coolify-server';
import { startCoolifyFleet } from './support/coolify';
import { createBot, eventsOf as events, TestFleet, waitFor, waitForStatus as waitStatus } from './support/fleet';

/**
 * A fleet with `coolify` as its only platform, against the Coolify test server: a slot whose deployments
 * fail costs the bot one try, not the platform; only when every try failed is the platform excluded.
 */
jest.setTimeout(180_000);

let coolify: CoolifyServer | undefined;
let t: TestFleet | undefined;
afterEach(async () => {
  await t?.close();
  await coolify?.close();
  t = coolify = undefined;
});

async function fleet(env: Record<string, string> = {}) {
  const started = await startCoolifyFleet({
    PLATFORM_PRIORITY: 'coolify',
    COOLIFY_MIN_IDLE_SLOTS: '2',
    GLOBAL_QUEUE_TIMEOUT_MS: '600000',
    ...env,
  });
  ({ coolify, t } = started);
  return started;
}

/** The idle slots of the pool, the least recently used (the next one taken) first, once there are `count`. */
async function idleSlots(t: TestFleet, count: number) {
  const records = createSlotRecords(t.fleet.mongo, t.fleet.fleetId);
  const pool = createSlotPool({
    redis: t.fleet.redis,
    prefix: t.env.REDIS_PREFIX,
    fleetId: t.fleet.fleetId,
    limit: 3,
    meetingPlatforms: ['zoom'],
    records: () => records.all(),
  });
  const slots = await waitFor(async () => {
    const idle = await t.fleet.redis.zrange(`${pool.keys.idlePrefix}zoom`, 0, -1);
    return idle.length >= count && idle;
  }, `${count} idle slots`);
  const uuids = await Promise.all(slots.map(async (slot) => (await records.get(slot))!.applicationUuid!));
  return slots.map((slot, index) => ({ slot, uuid: uuids[index] }));
}

it('one broken slot among healthy ones: the failed try is recorded, the bot is retried on another slot and completes on coolify', async () => {
  const { t, coolify } = await fleet();
  const [broken] = await idleSlots(t, 2); // and a healthy one beside it
  coolify.failApplications.add(broken.uuid); // every deployment of that slot fails
  const id = await createBot(t, { metadata: { 'sim.durationMs': '1500' } });

  const ended = await waitStatus(t, id, ['ENDED', 'FATAL']);
  expect(ended).toMatchObject({ status: 'ENDED', endReason: 'COMPLETED', platform: 'coolify' });
  expect(ended.platformIdentifier).toMatch(new RegExp(`^mb-${id}-coolify--1@`));
  expect(ended.platformIdentifier).not.toContain(broken.slot);

  const all = await events(t, id);
  const tries = all.filter((e) => e.type.startsWith('attempt.') && e.type !== 'attempt.assigned');
  expect(tries.map((e) => e.type)).toEqual(['attempt.start-failed', 'attempt.retried', 'attempt.deployed']);
  expect(tries[0]).toMatchObject({ data: { platform: 'coolify', try: 0 } });
  expect(tries[0].reason).toMatch(new RegExp(`^coolify slot ${broken.slot} failed to start: deployment \\w+ failed$`));
  expect(tries[1].data).toEqual({ platform: 'coolify', try: 1, name: `mb-${id}-coolify--1` });
  // Never moved back to the queue, never excluded: the bot stayed on coolify the whole time.
  expect(all.filter((e) => e.type === 'status').map((e) => e.status)).toEqual([
    'QUEUED',
    'DEPLOYING',
    'JOINING_CALL',
    'IN_CALL',
    'LEAVING',
    'ENDED',
  ]);
  expect((await t.fleet.repo.findById(id))!.excludedPlatforms).toEqual([]);
});

it('retries exhausted: with every try on a broken slot the platform is excluded, the bot ends DEPLOY_FAILED with every try recorded', async () => {
  const { t, coolify } = await fleet({ COOLIFY_BOT_LIMIT: '2', COOLIFY_START_RETRIES: '1' });
  const slots = await idleSlots(t, 2);
  for (const { uuid } of slots) coolify.failApplications.add(uuid);
  const id = await createBot(t, { metadata: { 'sim.durationMs': '1500' } });

  expect(await waitStatus(t, id, ['ENDED', 'FATAL'])).toMatchObject({ status: 'FATAL', endReason: 'DEPLOY_FAILED' });
  const tries = (await events(t, id)).filter((e) => e.type.startsWith('attempt.') && e.type !== 'attempt.assigned');
  expect(tries.map((e) => `${e.type}:${e.data.try ?? ''}`)).toEqual([
    'attempt.start-failed:0',
    'attempt.retried:1',
    'attempt.start-failed:1',
    'attempt.failed:',
  ]);
  // One try on each slot, each with its reason.
  const failedOn = tries
    .filter((e) => e.type === 'attempt.start-failed')
    .map((e) => /^coolify slot (\S+) failed to start/.exec(e.reason)?.[1]);
  expect(new Set(failedOn)).toEqual(new Set(slots.map((s) => s.slot)));
  expect(tries[3].reason).toMatch(/failed to start: deployment \w+ failed \(after 2 tries\)$/);
});
