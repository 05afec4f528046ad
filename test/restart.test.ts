import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import { freePort, isPortOpen } from '../src/peers';
import { httpRequest, spawnFleetProcess, uniqueName, waitFor, FleetProcess, sleep } from './support/fleet';
import { botProcessGroups, childrenNamed, isAlive } from './support/processes';

/**
 * The embedded default (`npm start` with no REDIS_URL / MONGODB_URI: it starts its own redis-server with an
 * append-only file and FerretDB, data under .data/ of its working directory) killed outright, Redis and
 * FerretDB included, while its local bot processes live on; then started again in the same directory.
 * Six bots on a limit of three: three in call, three queued at the kill. Nothing may be lost or doubled.
 */
jest.setTimeout(300_000);

const API_KEY = 'restart-test-key-0123456789';
const EMBEDDED_PORTS = [6379, 27017];

async function runScenario(options: { flushRedis: boolean; machineRestart?: boolean }) {
  for (const port of EMBEDDED_PORTS) {
    // The embedded default uses (or starts) these ports; a server already there would be used instead.
    expect({ port, inUse: await isPortOpen(port) }).toEqual({ port, inUse: false });
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-restart-'));
  const port = await freePort();
  const env = {
    PORT: String(port),
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    BOOTSTRAP_API_KEY: API_KEY,
    REDIS_PREFIX: uniqueName('mbtest'),
    LOCAL_BOT_LIMIT: '3',
    LOCAL_RUN_DIR: path.join(dir, 'run'),
    HEARTBEAT_INTERVAL_MS: '500',
    SWEEP_INTERVAL_MS: '1000',
    WORKER_LOCK_DURATION_MS: '2000',
    LOG_LEVEL: 'info',
  };
  const base = env.PUBLIC_URL;
  const api = (method: string, route: string, body?: unknown) =>
    httpRequest(base, method, route, { auth: API_KEY, body });
  const start = async () => {
    const fleet = spawnFleetProcess('all', env, dir);
    await waitFor(
      async () => (await httpRequest(base, 'GET', '/readyz')).status === 200,
      'the fleet to be ready',
      90_000,
    );
    return fleet;
  };

  const botIds: string[] = [];
  const peak = { bots: 0, groupsPerBot: 0 };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const groups = botProcessGroups(new Set(botIds));
      peak.bots = Math.max(peak.bots, groups.size);
      for (const set of groups.values()) peak.groupsPerBot = Math.max(peak.groupsPerBot, set.size);
      await sleep(50);
    }
  })();

  let fleet: FleetProcess | undefined;
  try {
    fleet = await start();
    // In call long enough to outlive the restart, one after another so each frees capacity on its own.
    for (const durationMs of [60_000, 63_000, 66_000, 3_000, 3_000, 3_000]) {
      const created = await api('POST', '/api/bots', {
        meeting: { platform: 'google-meet', url: 'https://meet.google.com/abc-defg-hij' },
        metadata: { 'sim.durationMs': String(durationMs) },
      });
      expect(created.status).toBe(201);
      botIds.push(created.body.id);
    }
    await waitFor(async () => {
      const statuses = await Promise.all(botIds.map(async (id) => (await api('GET', `/api/bots/${id}`)).body.status));
      return statuses.slice(0, 3).every((s) => s === 'IN_CALL') && statuses.slice(3).every((s) => s === 'QUEUED');
    }, 'three bots in call and three queued');

    // Durable embedded default: Redis keeps an append-only file, the generated token secret is private.
    expect(existsSync(path.join(dir, '.data', 'redis', 'appendonlydir'))).toBe(true);
    expect(statSync(path.join(dir, '.data', 'bot-token-secret')).mode & 0o777).toBe(0o600);

    if (options.flushRedis) {
      const redis = new IORedis(6379);
      await redis.flushall();
      await redis.quit();
    }
    const peers = [...childrenNamed(fleet.child.pid!, 'redis-server'), ...childrenNamed(fleet.child.pid!, 'ferretdb')];
    expect(peers).toHaveLength(2);
    await fleet.kill('SIGKILL');
    for (const pid of peers) process.kill(pid, 'SIGKILL');
    await waitFor(() => peers.every((pid) => !isAlive(pid)), 'Redis and FerretDB to be gone');
    const inCall = botProcessGroups(new Set(botIds.slice(0, 3)));
    expect(inCall.size).toBe(3); // the bots live on...
    if (options.machineRestart) {
      // ...unless the machine restarted: then they are gone too.
      for (const groups of inCall.values()) for (const pgid of groups) process.kill(-pgid, 'SIGKILL');
      await waitFor(() => botProcessGroups(new Set(botIds)).size === 0, 'the bot processes to be gone');
    }

    fleet = await start();
    const ended = await waitFor(
      async () => {
        const bots = await Promise.all(botIds.map(async (id) => (await api('GET', `/api/bots/${id}`)).body));
        return bots.every((bot) => bot.status === 'ENDED' || bot.status === 'FATAL') ? bots : null;
      },
      'every bot to end',
      180_000,
    );
    const lost = options.machineRestart ? ['FATAL/CONTAINER_LOST'] : ['ENDED/COMPLETED'];
    expect(ended.map((bot) => `${bot.status}/${bot.endReason}`)).toEqual([
      ...Array(3).fill(lost[0]),
      ...Array(3).fill('ENDED/COMPLETED'),
    ]);

    const events = await Promise.all(botIds.map(async (id) => (await api('GET', `/api/bots/${id}/events`)).body.data));
    // Deployed once each: the first three were adopted after the restart, never started again.
    expect(
      events.map((list: Array<{ type: string }>) => list.filter((e) => e.type === 'attempt.deployed').length),
    ).toEqual(Array(6).fill(1));
    if (!options.machineRestart) {
      // (their calls outlast the restart by far, even on a slow machine)
      const adopted = events
        .slice(0, 3)
        .filter((list: Array<{ type: string }>) => list.some((e) => e.type === 'attempt.adopted'));
      expect(adopted).toHaveLength(3);
    }
    // The queued ones were placed in the order they were created.
    const assignedAt = events
      .slice(3)
      .map((list: Array<{ type: string; at: string }>) =>
        Date.parse(list.find((e) => e.type === 'attempt.assigned')!.at),
      );
    expect([...assignedAt].sort((a, b) => a - b)).toEqual(assignedAt);
    expect(peak.bots).toBeLessThanOrEqual(3);
    expect(peak.groupsPerBot).toBe(1);
  } finally {
    sampling = false;
    await sampler;
    // The embedded peers are closed last; a fleet cut short by its deadline would leave them on 6379/27017
    // for the next scenario.
    const leftovers = fleet?.child.pid
      ? [...childrenNamed(fleet.child.pid, 'redis-server'), ...childrenNamed(fleet.child.pid, 'ferretdb')]
      : [];
    await fleet?.kill('SIGTERM');
    for (const pid of leftovers.filter(isAlive)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

it('a SIGKILLed embedded fleet, its Redis and its FerretDB: restarted, every bot completes once, in order, within the limit', async () => {
  await runScenario({ flushRedis: false });
});

it('the same with Redis wiped (FLUSHALL) before the kill: rebuilt from MongoDB', async () => {
  await runScenario({ flushRedis: true });
});

it('a machine restart (bot processes gone too): the lost bots end CONTAINER_LOST, the queued ones complete', async () => {
  await runScenario({ flushRedis: false, machineRestart: true });
});
