import { loadConfig } from '../src/config';
import { MeetingPlatform } from '../src/domain/bot.lifecycle';
import { botEnv } from '../src/platforms/bot-env';
import { createCoolifyPlatform } from '../src/platforms/coolify/coolify.platform';
import { createSlotPool } from '../src/platforms/coolify/slot.pool';
import { createSlotRecords } from '../src/platforms/coolify/slot.records';
import { botIdOfDeployment, deploymentName, Platform, PlatformError } from '../src/platforms/platform';
import { CoolifyServer, startCoolifyServer } from './support/coolify-server';
import { COOLIFY_TOKEN, coolifySettings, imageOf } from './support/coolify';
import { runPlatformContract } from './platform-contract';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * The Coolify adapter against the Coolify API test server: the shared contract, then the pool's own rules
 * (LRU acquire of the bot's own image, full is not failed, the wire-format traps, slot recovery).
 */
jest.setTimeout(120_000);

let t: TestFleet;
let coolify: CoolifyServer;
beforeAll(async () => {
  coolify = await startCoolifyServer({ token: COOLIFY_TOKEN });
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim' }, { api: true, workers: false });
});
afterAll(async () => {
  await t.close();
  await coolify.close();
});

let fleets = 0;
/** An adapter of its own fleet (own slots) unless `fleetId` names one. */
function make(
  options: {
    fleetId?: string;
    limit?: number;
    stopClaimMs?: number;
    statusLagGraceMs?: number;
    stopConfirmMs?: number;
    settings?: Parameters<typeof coolifySettings>[1];
  } = {},
): Platform {
  return createCoolifyPlatform({
    name: 'coolify',
    settings: coolifySettings(coolify, options.settings),
    limit: options.limit ?? 5,
    fleetId: options.fleetId ?? `${t.env.REDIS_PREFIX}-f${++fleets}`,
    redis: t.fleet.redis,
    prefix: t.env.REDIS_PREFIX,
    mongo: t.fleet.mongo,
    recoveryIntervalMs: 60_000,
    stopClaimMs: options.stopClaimMs,
    statusLagGraceMs: options.statusLagGraceMs,
    stopConfirmMs: options.stopConfirmMs,
  });
}

async function newSpec(meetingPlatform: MeetingPlatform = 'zoom') {
  const created = await t.request('POST', '/api/bots', {
    body: {
      meeting: meetingPlatform === 'zoom' ? meetings.zoom : meetings.meet,
      metadata: { 'sim.durationMs': '600000' },
    },
  });
  const botId = created.body.id as string;
  return {
    botId,
    name: deploymentName(botId, 'coolify'),
    attempt: 0,
    meetingPlatform,
    maxDurationMs: null,
    env: botEnv(loadConfig(t.env), botId),
  };
}

const appOf = (slot: string) => [...coolify.applications.values()].find((app) => app.name === slot)!;
const slotOf = (identifier: string) => identifier.slice(identifier.lastIndexOf('@') + 1);
/** How many stop calls the Coolify server has had for the application of this container's slot. */
const stopCallsOf = (identifier: string) => {
  const path = `/api/v1/applications/${appOf(slotOf(identifier)).uuid}/stop`;
  return () => coolify.requests.filter((c) => c.method === 'POST' && c.path === path).length;
};

runPlatformContract('coolify', () => {
  const fleetId = `${t.env.REDIS_PREFIX}-contract`;
  return {
    platform: make({ fleetId }),
    otherFleet: make({ fleetId: 'another-fleet' }),
    newSpec: () => newSpec(),
    // Running containers of that bot on the Coolify server, whichever fleet started them.
    containersNamed: (name) =>
      Promise.resolve(coolify.running().filter((app) => app.envs.get('BOT_ID') === botIdOfDeployment(name)).length),
  };
});

describe('coolify slots', () => {
  it("a bot gets its own meeting platform's image, the least recently used idle slot, and the bot env", async () => {
    const platform = make({ limit: 4 });
    const [zoomA, zoomB, meetA] = [await newSpec('zoom'), await newSpec('zoom'), await newSpec('google-meet')];
    const a = await platform.deploy(zoomA);
    const b = await platform.deploy(zoomB);
    const m = await platform.deploy(meetA);
    expect([
      imageOf(coolify, appOf(slotOf(a.identifier)).uuid),
      imageOf(coolify, appOf(slotOf(m.identifier)).uuid),
    ]).toEqual(['zoom', 'google-meet']);
    expect(appOf(slotOf(a.identifier)).fields.docker_registry_image_name).toBe('ghcr.io/payme-works/meeboter-zoom-bot');
    expect(Object.fromEntries(appOf(slotOf(a.identifier)).envs)).toMatchObject({
      BOT_ID: zoomA.botId,
      MILO_URL: t.env.PUBLIC_URL,
      NODE_ENV: 'production',
    });
    // b's slot was used last, so a's is the least recently used once both are idle
    await platform.stop(a.identifier);
    await platform.stop(b.identifier);
    const next = await platform.deploy(await newSpec('zoom'));
    expect(slotOf(next.identifier)).toBe(slotOf(a.identifier));
    // with a google-meet slot idle and room in the pool, a zoom bot gets a new zoom slot, never that one
    await platform.stop(m.identifier);
    const another = await platform.deploy(await newSpec('zoom'));
    expect([slotOf(a.identifier), slotOf(m.identifier)]).not.toContain(slotOf(another.identifier));
    expect(imageOf(coolify, appOf(slotOf(another.identifier)).uuid)).toBe('zoom');
    for (const d of [next, another]) await platform.stop(d.identifier);
  });

  it('a full pool is "full" (the bot moves on at once); an idle slot of another image is re-imaged rather than left idle', async () => {
    const platform = make({ limit: 2 });
    const meet = await platform.deploy(await newSpec('google-meet'));
    const zoom = await platform.deploy(await newSpec('zoom'));
    const refused = await platform.deploy(await newSpec('zoom')).catch((error) => error);
    expect(refused).toBeInstanceOf(PlatformError);
    expect(refused).toMatchObject({ full: true, transient: false });
    await platform.stop(meet.identifier);
    const reimaged = await platform.deploy(await newSpec('zoom'));
    expect(slotOf(reimaged.identifier)).toBe(slotOf(meet.identifier));
    expect(imageOf(coolify, appOf(slotOf(reimaged.identifier)).uuid)).toBe('zoom');
    for (const d of [zoom, reimaged]) await platform.stop(d.identifier);
  });

  it('a failed deployment puts the slot in ERROR with the reason and throws a non-transient error', async () => {
    const fleetId = `${t.env.REDIS_PREFIX}-failing`;
    const platform = make({ fleetId });
    coolify.failDeployments = 1;
    const error = await platform.deploy(await newSpec()).catch((e) => e);
    expect(error).toMatchObject({ transient: false, full: false });
    expect(error.message).toMatch(/failed to start: deployment \w+ failed/);
    const [record] = await createSlotRecords(t.fleet.mongo, fleetId).all();
    expect(record).toMatchObject({ state: 'ERROR', deploymentName: null, botId: null, recoveryAttempts: 1 });
    expect(record.lastError).toMatch(/deployment \w+ failed/);
  });

  it("concurrent stops of one bot stop its application once, and none reaches the slot's next bot", async () => {
    const platform = make({ limit: 1 });
    const first = await platform.deploy(await newSpec());
    const app = appOf(slotOf(first.identifier));
    const stopsOf = stopCallsOf(first.identifier);
    const before = stopsOf();
    // The occupy job, reconciliation and slot recovery may all stop one bot at once.
    const stops = Array.from({ length: 10 }, () => platform.stop(first.identifier));
    // The next bot takes the slot the moment the first stop frees it, while the others are still running.
    const nextSpec = await newSpec();
    let next: Awaited<ReturnType<Platform['deploy']>> | null = null;
    while (!next) {
      next = await platform.deploy(nextSpec).catch(async (error) => {
        if (!(error instanceof PlatformError && error.full)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 10));
        return null;
      });
    }
    await Promise.all(stops);
    expect(slotOf(next.identifier)).toBe(slotOf(first.identifier));
    expect(stopsOf() - before).toBe(1);
    expect(coolify.running().map((a) => a.uuid)).toContain(app.uuid);
    expect(await platform.status(next.identifier)).toMatchObject({ state: 'running' });
    await platform.stop(next.identifier);
  });

  it('a stop slower than its claim keeps the claim while its process lives: the stop it holds off is not sent', async () => {
    const platform = make({ stopClaimMs: 600 });
    const deployment = await platform.deploy(await newSpec());
    const stopCalls = stopCallsOf(deployment.identifier);
    const before = stopCalls();
    coolify.delayMs = 1000; // each call of the stop takes longer than the claim lasts
    try {
      const first = platform.stop(deployment.identifier);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await Promise.all([first, platform.stop(deployment.identifier)]);
    } finally {
      coolify.delayMs = 0;
    }
    expect(stopCalls() - before).toBe(1);
  });

  it('a stop claim left by a process that died mid-stop lapses, and the next stop finishes the job', async () => {
    const fleetId = `${t.env.REDIS_PREFIX}-stop-claim`;
    const platform = make({ fleetId });
    const spec = await newSpec();
    const held = await platform.deploy(spec);
    const pool = createSlotPool({
      redis: t.fleet.redis,
      prefix: t.env.REDIS_PREFIX,
      fleetId,
      limit: 5,
      meetingPlatforms: ['zoom'],
      records: () => createSlotRecords(t.fleet.mongo, fleetId).all(),
    });
    const slot = slotOf(held.identifier);
    // A stopper that claimed and then died: its claim runs 500 ms, and nobody renews it.
    const dead = await pool.claimStop(slot, spec.name, 500);
    expect(dead.outcome).toBe('claimed');
    expect(await pool.claimStop(slot, spec.name, 500)).toEqual({ outcome: 'another' });
    await platform.stop(held.identifier);
    expect(coolify.running().map((a) => a.uuid)).not.toContain(appOf(slot).uuid);
    expect(await pool.view(slot)).toMatchObject({ state: 'IDLE', holder: null });
    // The lapsed claim is no longer its stopper's, and once the holder left, no claim is granted for it.
    expect(dead.outcome === 'claimed' && (await pool.renewStop(slot, dead.token, 500))).toBe(false);
    expect(await pool.claimStop(slot, spec.name, 500)).toEqual({ outcome: 'not-held' });
  });

  it('right after a start, the exited status Coolify has not updated yet is starting, not gone; an exit written after the start is gone', async () => {
    const platform = make();
    coolify.statusLagMs = 1000; // the server's next status check
    try {
      const deployment = await platform.deploy(await newSpec());
      const app = appOf(slotOf(deployment.identifier));
      expect(app.status).toMatch(/^exited/);
      expect(await platform.status(deployment.identifier)).toMatchObject({ state: 'starting' });
      expect((await platform.list()).map((c) => c.identifier)).toContain(deployment.identifier);
      await waitFor(() => app.status.startsWith('running'), 'the status check');
      expect(await platform.status(deployment.identifier)).toMatchObject({ state: 'running' });
      coolify.crash(app.uuid);
      expect(await platform.status(deployment.identifier)).toMatchObject({ state: 'gone' });
      expect((await platform.list()).map((c) => c.identifier)).not.toContain(deployment.identifier);
      await platform.stop(deployment.identifier);
    } finally {
      coolify.statusLagMs = 0;
    }
  });

  it('a stop before Coolify ever reported the container running waits out the lag and frees the slot', async () => {
    // Coolify's status stays the `exited` it had (it writes a status only when it changes), so nothing but
    // the lag's grace, here longer than a stop's usual wait, can confirm this stop.
    const fleetId = `${t.env.REDIS_PREFIX}-stop-in-lag`;
    const platform = make({ fleetId, statusLagGraceMs: 2000, stopConfirmMs: 300 });
    coolify.statusLagMs = 60_000;
    try {
      const deployment = await platform.deploy(await newSpec());
      const slot = slotOf(deployment.identifier);
      expect(appOf(slot).status).toMatch(/^exited/);
      await platform.stop(deployment.identifier);
      expect(appOf(slot).running).toBeUndefined();
      const record = await createSlotRecords(t.fleet.mongo, fleetId).get(slot);
      expect(record).toMatchObject({ state: 'IDLE', lastError: null });
    } finally {
      coolify.statusLagMs = 0;
    }
  });

  it('speaks the wire format: POST for deploy and stop, JSON Accept, Bearer token, 429 honoured', async () => {
    const platform = make();
    coolify.fail({ method: 'POST', path: /^\/deploy$/, status: 429, retryAfterSeconds: 1, times: 1 });
    const before = coolify.requests.length;
    const deployment = await platform.deploy(await newSpec());
    await platform.stop(deployment.identifier);
    const calls = coolify.requests.slice(before);
    expect(calls.filter((c) => c.path.startsWith('/api/v1/deploy?')).map((c) => `${c.method} ${c.status}`)).toEqual([
      'POST 429',
      'POST 200',
    ]);
    expect(calls.some((c) => c.path.endsWith('/stop') && c.method === 'POST' && c.status === 200)).toBe(true);
    expect(calls.filter((c) => c.status >= 400 && c.status !== 429)).toEqual([]);
    // what our server answers where those rules are broken
    const raw = (path: string, init: RequestInit = {}) => fetch(coolify.url + path, init);
    expect(
      (
        await raw('/deploy?uuid=x', {
          headers: { authorization: `Bearer ${COOLIFY_TOKEN}`, accept: 'application/json' },
        })
      ).status,
    ).toBe(405);
    expect((await raw('/applications', { headers: { accept: 'application/json' } })).status).toBe(401);
  });

  it('slot recovery: a 500 or 429 from the application list deletes nothing and changes nothing', async () => {
    const fleetId = `${t.env.REDIS_PREFIX}-listfault`;
    const platform = make({ fleetId, settings: { minIdleSlots: 1 } });
    const held = await platform.deploy(await newSpec());
    const records = createSlotRecords(t.fleet.mongo, fleetId);
    const before = (await records.all()).map((r) => [r._id, r.state]);
    const holdsBot = () => Promise.resolve(false); // even with every bot gone, a failed list judges nothing
    for (const status of [500, 429] as const) {
      coolify.fail({ method: 'GET', path: /^\/applications$/, status, retryAfterSeconds: 1, times: 10 });
      const start = coolify.requests.length;
      await expect(platform.upkeep!.run({ holdsBot })).rejects.toThrow(String(status));
      const calls = coolify.requests.slice(start);
      expect(calls.filter((c) => c.method !== 'GET')).toEqual([]);
      expect((await records.all()).map((r) => [r._id, r.state])).toEqual(before);
      coolify.clearFaults();
    }
    expect((await platform.status(held.identifier)).state).toBe('running');
    await platform.stop(held.identifier);
  });

  it('slot recovery heals an ERROR slot, keeps the minimum idle, and replaces a slot that keeps failing', async () => {
    const fleetId = `${t.env.REDIS_PREFIX}-recovery`;
    const platform = make({ fleetId, settings: { minIdleSlots: 1, meetingPlatforms: ['zoom'], maxSlotFailures: 2 } });
    const records = createSlotRecords(t.fleet.mongo, fleetId);
    const holdsBot = () => Promise.resolve(true);
    expect(await platform.upkeep!.run({ holdsBot })).toMatchObject({ created: 1 });
    const [warm] = await records.all();
    expect(warm).toMatchObject({ state: 'IDLE', meetingPlatform: 'zoom' });

    coolify.failApplications.add(warm.applicationUuid!);
    await expect(platform.deploy(await newSpec())).rejects.toThrow(/failed to start/);
    expect((await records.get(warm._id))?.state).toBe('ERROR');
    // healed: back in the pool (and the minimum idle is met by it again)
    expect(await platform.upkeep!.run({ holdsBot })).toMatchObject({ healed: 1, created: 0 });
    expect(await records.get(warm._id)).toMatchObject({ state: 'IDLE', recoveryAttempts: 1 });
    // second failure in a row: recovery deletes it and creates a replacement
    await expect(platform.deploy(await newSpec())).rejects.toThrow(/failed to start/);
    expect(await platform.upkeep!.run({ holdsBot })).toMatchObject({ replaced: 1, created: 1 });
    expect(coolify.applications.has(warm.applicationUuid!)).toBe(false);
    const after = await records.all();
    expect(after.map((r) => r._id)).not.toContain(warm._id);
    expect(after).toEqual([expect.objectContaining({ state: 'IDLE', meetingPlatform: 'zoom', recoveryAttempts: 0 })]);
    // and the replacement starts bots
    const ok = await platform.deploy(await newSpec());
    expect(slotOf(ok.identifier)).toBe(after[0]._id);
    await platform.stop(ok.identifier);
  });

  it('slot recovery repairs drift: an orphaned application of this fleet is deleted, a deleted one re-created, others untouched', async () => {
    const fleetId = `${t.env.REDIS_PREFIX}-drift`;
    const platform = make({ fleetId, settings: { minIdleSlots: 1, meetingPlatforms: ['zoom'] } });
    const records = createSlotRecords(t.fleet.mongo, fleetId);
    await platform.upkeep!.run({ holdsBot: () => Promise.resolve(true) });
    const [slot] = await records.all();
    coolify.applications.delete(slot.applicationUuid!); // deleted in the Coolify UI
    const orphan = {
      uuid: 'orphan-uuid-000',
      name: 'mb-slot-x',
      description: `meeboter-fleet=${fleetId} left over`,
      status: 'exited:unhealthy',
      fields: {},
      envs: new Map(),
      created_at: '',
      updated_at: '',
    };
    const foreign = { ...orphan, uuid: 'foreign-uuid-00', description: 'meeboter-fleet=someone-else' };
    coolify.applications.set(orphan.uuid, orphan);
    coolify.applications.set(foreign.uuid, foreign);
    expect(await platform.upkeep!.run({ holdsBot: () => Promise.resolve(true) })).toMatchObject({
      orphansDeleted: 1,
      healed: 1,
    });
    expect(coolify.applications.has(orphan.uuid)).toBe(false);
    expect(coolify.applications.has(foreign.uuid)).toBe(true);
    const healed = await records.get(slot._id);
    expect(healed?.state).toBe('IDLE');
    expect(coolify.applications.has(healed!.applicationUuid!)).toBe(true);
  });

  it('after Redis lost the pool, it is rebuilt from the slot records: a held slot stays held, idle ones are found', async () => {
    const fleetId = `${t.env.REDIS_PREFIX}-rebuild`;
    const platform = make({ fleetId });
    const spec = await newSpec();
    const held = await platform.deploy(spec);
    const idle = await platform.deploy(await newSpec());
    await platform.stop(idle.identifier);
    const keys = await t.fleet.redis.keys(`${t.env.REDIS_PREFIX}:coolify:${fleetId}:*`);
    await t.fleet.redis.del(...keys);
    expect((await platform.adopt(spec.name))?.identifier).toBe(held.identifier);
    const again = await platform.deploy(await newSpec());
    expect(slotOf(again.identifier)).toBe(slotOf(idle.identifier));
    for (const d of [held, again]) await platform.stop(d.identifier);
  });
});
