import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config';
import { botEnv } from '../src/platforms/bot-env';
import { createLocalPlatform } from '../src/platforms/local/local.platform';
import { deploymentName } from '../src/platforms/platform';
import { DEFAULT_LOCAL_BOT_COMMAND } from '../src/platforms/registry';
import { createSimPlatform, SIM_BOT_CONNECTIONS, simHostKeys } from '../src/platforms/sim/sim.platform';
import { runPlatformContract } from './platform-contract';
import { meetings, pidOf, startTestFleet, TestFleet, waitFor } from './support/fleet';
import { groupMembers } from './support/processes';

/** Every adapter runs the contract; each one's quirks are tested below it. Bots talk to a real API. */
let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim' }, { api: true, workers: false });
});
afterAll(() => t.close());

async function newBotSpec(platform: string) {
  const created = await t.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '600000' } },
  });
  const botId = created.body.id as string;
  const config = loadConfig(t.env);
  return {
    botId,
    name: deploymentName(botId, platform),
    attempt: 0,
    meetingPlatform: 'zoom' as const,
    maxDurationMs: null,
    env: botEnv(config, botId),
  };
}

function pidAlive(pid: number) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('local', () => {
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-local-'));
  const strangers: number[] = [];
  afterAll(() => strangers.forEach((pid) => pidAlive(pid) && process.kill(-pid, 'SIGKILL')));
  const make = (fleetId = t.env.REDIS_PREFIX) =>
    createLocalPlatform({
      name: 'local',
      command: DEFAULT_LOCAL_BOT_COMMAND,
      runDir,
      stopGraceMs: 2000,
      fleetId,
      hostId: 'host-a',
      redis: t.fleet.redis,
      prefix: t.env.REDIS_PREFIX,
      leaseRenewMs: 10_000,
      hostGoneAfterMs: 300_000,
    });

  runPlatformContract('local', () => {
    const platform = make();
    const otherFleet = make('another-fleet');
    return {
      platform,
      otherFleet,
      newSpec: () => newBotSpec('local'),
      // Every fleet's processes: a double deploy by either would show.
      containersNamed: async (name) => ((await platform.adopt(name)) || (await otherFleet.adopt(name)) ? 1 : 0),
    };
  });

  it('runs the sim bot as a real process that talks to the API, and it outlives its adapter', async () => {
    const spec = await newBotSpec('local');
    const first = make();
    const deployment = await first.deploy(spec);
    await waitFor(async () => (await t.request('GET', `/api/bots/${spec.botId}`)).body.status === 'IN_CALL', 'IN_CALL');
    await first.close();
    const pid = Number(deployment.identifier.split('@')[0]);
    expect(pidAlive(pid)).toBe(true);
    // a second fleet process adopts it by name and stops it
    const second = make();
    const adopted = await second.adopt(spec.name);
    expect(adopted?.identifier).toBe(deployment.identifier);
    await second.stop(adopted!.identifier);
    // stop() returns once the process has exited; the zombie is reaped by its parent (this process) soon after
    await waitFor(() => !pidAlive(pid), 'the process to be reaped');
    expect(readdirSync(runDir).filter((f) => f === `${spec.name}.pid`)).toEqual([]);
  });

  it('a pid file whose pid now names another process (the bot exited, or the host rebooted) is stale: never adopted, judged or signalled', async () => {
    const platform = make();
    for (const forged of [{ startedAt: '1' }, { boot: 'an-earlier-boot' }]) {
      // An unrelated process that leads its own group, as a daemon does, now has the recorded pid.
      const stranger = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
      strangers.push(stranger.pid!);
      const name = deploymentName(`stale${forged.boot ? 'boot' : 'start'}`, 'local');
      // Each look finds the file in place (a stale one is removed once seen).
      const staleFile = () =>
        writeFileSync(
          path.join(runDir, `${name}.pid`),
          JSON.stringify({ pid: stranger.pid, fleet: t.env.REDIS_PREFIX, host: 'host-a', ...forged }),
        );
      const identifier = `${stranger.pid}@host-a`;
      staleFile();
      expect(await platform.adopt(name)).toBeNull();
      staleFile();
      expect((await platform.list()).map((c) => c.identifier)).not.toContain(identifier);
      staleFile();
      expect(await platform.status(identifier)).toEqual({ state: 'gone' });
      staleFile();
      await platform.stop(identifier);
      expect(readdirSync(runDir)).not.toContain(`${name}.pid`);
      expect(pidAlive(stranger.pid!)).toBe(true);
    }
  });

  it("a stale pid file that records a live bot's pid hides nothing: the bot reads running and its stop stops it", async () => {
    const platform = make();
    const spec = await newBotSpec('local');
    const deployment = await platform.deploy(spec);
    const pid = pidOf(deployment.identifier);
    // Left from before a reboot by another bot, whose process had the pid this one has now.
    const staleName = deploymentName('beforereboot', 'local');
    writeFileSync(
      path.join(runDir, `${staleName}.pid`),
      JSON.stringify({ pid, fleet: t.env.REDIS_PREFIX, host: 'host-a', boot: 'an-earlier-boot' }),
    );
    expect(await platform.status(deployment.identifier)).toEqual({ state: 'running' });
    await platform.stop(deployment.identifier);
    expect(await platform.status(deployment.identifier)).toEqual({ state: 'gone' });
    await waitFor(() => !pidAlive(pid), 'the bot process to be reaped');
    expect(readdirSync(runDir).filter((f) => f === `${staleName}.pid` || f === `${spec.name}.pid`)).toEqual([]);
  });
});

describe('local stop', () => {
  it('returns only once every process of the bot is gone, a child that ignores SIGTERM included', async () => {
    const runDir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-local-group-'));
    // The bot's command leaves a child that ignores SIGTERM; only the whole group's end frees the capacity.
    const platform = createLocalPlatform({
      name: 'local',
      command: `(trap '' TERM; exec sleep 300) & sleep 300`,
      runDir,
      stopGraceMs: 500,
      fleetId: t.env.REDIS_PREFIX,
      hostId: 'host-a',
      redis: t.fleet.redis,
      prefix: t.env.REDIS_PREFIX,
      leaseRenewMs: 10_000,
      hostGoneAfterMs: 300_000,
    });
    const spec = await newBotSpec('local');
    const deployment = await platform.deploy(spec);
    const pgid = pidOf(deployment.identifier);
    await waitFor(() => groupMembers(pgid).length >= 2, 'the bot and its child to run');
    await platform.stop(deployment.identifier);
    expect(groupMembers(pgid)).toEqual([]);
    expect((await platform.status(deployment.identifier)).state).toBe('gone');
  });
});

describe('sim', () => {
  const sim = (name: string, fleetId = t.env.REDIS_PREFIX) =>
    createSimPlatform({ name, redis: t.fleet.redis, host: t.env.REDIS_PREFIX, fleetId });

  runPlatformContract('sim', () => {
    const platform = sim('sim');
    const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim');
    return {
      platform,
      otherFleet: sim('sim', 'another-fleet'),
      newSpec: () => newBotSpec('sim'),
      containersNamed: (name) => t.fleet.redis.hexists(keys.containers, name),
    };
  });

  it('a container whose process died is adopted and its bot resumed by another process', async () => {
    const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim-x');
    const spec = await newBotSpec('sim-x');
    const first = sim('sim-x');
    await first.deploy(spec);
    await waitFor(async () => (await t.request('GET', `/api/bots/${spec.botId}`)).body.status === 'IN_CALL', 'IN_CALL');
    await first.close(); // its process "dies"; the container stays on the host
    expect(await t.fleet.redis.hexists(keys.containers, spec.name)).toBe(1);
    const second = sim('sim-x');
    expect(await second.adopt(spec.name)).not.toBeNull();
    expect(await t.fleet.redis.hget(keys.deploys, spec.name)).toBe('1');
    await second.stop(spec.name);
    expect(await t.fleet.redis.hexists(keys.containers, spec.name)).toBe(0);
  });

  it('injects deploy faults for fallback tests', async () => {
    const platform = sim('sim-f');
    const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim-f');
    await t.fleet.redis.set(keys.fault, 'fail');
    await expect(platform.deploy(await newBotSpec('sim-f'))).rejects.toMatchObject({ transient: true });
    await t.fleet.redis.set(keys.fault, 'fail-permanent');
    await expect(platform.deploy(await newBotSpec('sim-f'))).rejects.toMatchObject({ transient: false });
    expect(await t.fleet.redis.hlen(keys.containers)).toBe(0);
  });

  it(`a platform's bots share ${SIM_BOT_CONNECTIONS} connections to the fleet, however many call at once`, async () => {
    // A fleet that holds every request 500 ms and then answers 410, so each bot asks for its config once and ends.
    const sockets = new Set<Socket>();
    let requests = 0;
    const server = http.createServer((_req, res) => {
      requests++;
      setTimeout(() => res.writeHead(410).end('{}'), 500);
    });
    server.on('connection', (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim-c');
    const platform = sim('sim-c');
    try {
      const bots = 3 * SIM_BOT_CONNECTIONS;
      const specs = await Promise.all(Array.from({ length: bots }, () => newBotSpec('sim-c')));
      // all at once, so that every bot asks while the first ones are still held
      await Promise.all(specs.map((spec) => platform.deploy({ ...spec, env: { ...spec.env, MILO_URL: url } })));
      await waitFor(async () => (await t.fleet.redis.hlen(keys.containers)) === 0, 'every bot ended');
      expect(requests).toBe(bots);
      expect(sockets.size).toBe(SIM_BOT_CONNECTIONS);
    } finally {
      await platform.close();
      server.closeAllConnections();
      server.close();
    }
  });
});

/** A sim host process (`npm run sim-host`) on the test fleet's Redis for the enclosing describe. */
function simHostProcess(env: Record<string, string>) {
  let simHost: ReturnType<typeof spawn>;
  beforeAll(async () => {
    simHost = spawn(process.execPath, ['dist/scripts/sim-host.js'], {
      env: { ...process.env, REDIS_URL: t.env.REDIS_URL, SIM_HOST: t.env.REDIS_PREFIX, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      simHost.stdout!.once('data', () => resolve());
      simHost.once('exit', (code) => reject(new Error(`the sim host exited (${code}) before it was ready`)));
    });
  });
  afterAll(async () => {
    if (simHost.exitCode !== null || simHost.signalCode !== null) return;
    const exited = new Promise((resolve) => simHost.once('exit', resolve));
    simHost.kill('SIGTERM');
    await exited;
  });
}

describe('sim with its bots on a sim host process (SIM_RUNNER=sim-host)', () => {
  const sim = (fleetId = t.env.REDIS_PREFIX) =>
    createSimPlatform({ name: 'sim-h', redis: t.fleet.redis, host: t.env.REDIS_PREFIX, fleetId, runner: 'sim-host' });
  const keys = () => simHostKeys(t.env.REDIS_PREFIX, 'sim-h');
  simHostProcess({ SIM_PLATFORMS: 'sim-h' });

  runPlatformContract('sim on a sim host', () => ({
    platform: sim(),
    otherFleet: sim('another-fleet'),
    newSpec: () => newBotSpec('sim-h'),
    containersNamed: (name) => t.fleet.redis.hexists(keys().containers, name),
  }));

  it('the sim host process runs the bot to its end, and a stopped container stops its bot', async () => {
    const platform = sim();
    const short = await newBotSpec('sim-h');
    const shortBot = await t.fleet.repo.update(short.botId, { metadata: [{ key: 'sim.durationMs', value: '300' }] });
    expect(shortBot).not.toBeNull();
    await platform.deploy(short);
    // its program ended on the sim host: the bot reported ENDED and the host removed its container
    await waitFor(async () => (await t.request('GET', `/api/bots/${short.botId}`)).body.status === 'ENDED', 'ENDED');
    await waitFor(async () => (await t.fleet.redis.hexists(keys().containers, short.name)) === 0, 'container removed');

    const long = await newBotSpec('sim-h');
    await platform.deploy(long);
    await waitFor(async () => (await t.request('GET', `/api/bots/${long.botId}`)).body.status === 'IN_CALL', 'IN_CALL');
    await platform.stop(long.name);
    // no more heartbeats from a stopped bot: its last one stays where it was
    const heartbeatOf = () => t.fleet.liveState.lastHeartbeat(long.botId);
    const interval = Number(t.env.HEARTBEAT_INTERVAL_MS ?? 1000);
    await new Promise((resolve) => setTimeout(resolve, 3 * interval));
    const last = await heartbeatOf();
    await new Promise((resolve) => setTimeout(resolve, 3 * interval));
    expect(await heartbeatOf()).toEqual(last);
  });
});

describe('a sim host that runs no bots (SIM_HOST_RUN_BOTS=false, the benchmark’s create path)', () => {
  simHostProcess({ SIM_PLATFORMS: 'sim-q', SIM_HOST_RUN_BOTS: 'false' });

  it('takes the container’s start, and its bot never calls the fleet', async () => {
    const platform = createSimPlatform({
      name: 'sim-q',
      redis: t.fleet.redis,
      host: t.env.REDIS_PREFIX,
      fleetId: t.env.REDIS_PREFIX,
      runner: 'sim-host',
    });
    const spec = await newBotSpec('sim-q');
    await platform.deploy(spec);
    const keys = simHostKeys(t.env.REDIS_PREFIX, 'sim-q');
    // the host took the start off its list, and the container stays
    await waitFor(async () => (await t.fleet.redis.llen(keys.starts)) === 0, 'the start taken');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await t.fleet.redis.hexists(keys.containers, spec.name)).toBe(1);
    const bot = (await t.request('GET', `/api/bots/${spec.botId}`)).body;
    expect(bot.status).toBe('QUEUED');
    expect(bot.lastHeartbeatAt).toBeNull();
  });
});
