import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startAwsPeer } from '../reliability/chaos/peers/aws';
import { startCoolifyPeer } from '../reliability/chaos/peers/coolify';
import { startK8sPeer } from '../reliability/chaos/peers/k8s';
import {
  directPaths,
  LiveContainer,
  NetworkPaths,
  PeerContext,
  PlatformPeer,
} from '../reliability/chaos/platform-peer';
import { startToxiproxy } from '../reliability/chaos/toxiproxy';
import { freePort } from '../src/peers';
import { awsSdkEnv } from './support/moto';
import { attemptsOf, createBot, startTestFleet, TestFleet, uniqueName, waitFor, waitForStatus } from './support/fleet';

/**
 * The chaos run's platform peers, each against a real fleet: a bot placed through the peer's `fleetEnv` is
 * played as the sim bot, the peer's own truth lists exactly that bot's container while it runs and nothing once
 * it ended, and the peer-down fault makes that truth unavailable (a rejection, never an empty list) until it
 * ends.
 */
jest.setTimeout(300_000);

const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-chaos-peers-'));
const closing: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closing.splice(0).reverse()) await close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Started {
  peer: PlatformPeer;
  t: TestFleet;
  logs: string[];
  /** The paths the peer opened: name → the address the fleet was given. */
  opened: Map<string, string>;
}

/** Starts the peer with `paths`, then a fleet (API and workers in this process) placing bots only on it. */
async function peerAndFleet(
  start: (ctx: PeerContext) => Promise<PlatformPeer>,
  paths: NetworkPaths,
  fleetEnv: Record<string, string> = {},
): Promise<Started> {
  const port = await freePort();
  const logs: string[] = [];
  const opened = new Map<string, string>();
  const ctx: PeerContext = {
    dir: mkdtempSync(path.join(dir, 'peer-')),
    limit: 2,
    fleetId: uniqueName('chaos'),
    apiUrl: `http://127.0.0.1:${port}`,
    paths: {
      ...paths,
      async open(name, upstream) {
        const address = await paths.open(name, upstream);
        opened.set(name, address);
        return address;
      },
    },
    log: (line) => logs.push(line),
  };
  const peer = await start(ctx);
  closing.push(() => peer.close());
  expect(peer.limit).toBe(2);
  // An in-process fleet's AWS SDK reads its own variables from this process's environment.
  for (const name of Object.keys(awsSdkEnv(''))) if (peer.fleetEnv[name]) process.env[name] = peer.fleetEnv[name];
  const t = await startTestFleet({
    PORT: String(port),
    PUBLIC_URL: `http://127.0.0.1:${port}/wrong`, // the players reach the API at the run's apiUrl, not here
    FLEET_ID: ctx.fleetId,
    PLATFORM_PRIORITY: peer.platform,
    SWEEP_INTERVAL_MS: '1000',
    ...peer.fleetEnv,
    ...fleetEnv,
  });
  closing.push(() => t.close());
  return { peer, t, logs, opened };
}

/**
 * Another fleet's bot on the same peer, deployed and left there: the peer's truth must never list it (its
 * player does not play it either, so it stays DEPLOYING).
 */
async function anotherFleetsBot({ peer }: Started, fleetEnv: Record<string, string> = {}): Promise<void> {
  const other = await startTestFleet({
    FLEET_ID: uniqueName('other'),
    PLATFORM_PRIORITY: peer.platform,
    ...peer.fleetEnv,
    ...fleetEnv,
  });
  closing.push(() => other.close());
  const id = await createBot(other);
  await waitFor(
    async () => (await attemptsOf(other, id)).includes(`attempt.deployed:${peer.platform}`),
    "the other fleet's bot to be deployed",
  );
}

/** One bot on the peer: listed alone by the peer while it runs, completed, and then nothing is listed. */
async function placeOneBot({ peer, t, logs }: Started): Promise<void> {
  const id = await createBot(t, { metadata: { 'sim.durationMs': '3000' } });
  const listed = await waitFor(async () => {
    const live = await peer.liveContainers();
    return live.length > 0 && live;
  }, 'the bot to be listed by the peer');
  expect(listed).toEqual([{ id: expect.any(String), botId: id } satisfies LiveContainer]);
  const ended = await waitForStatus(t, id, ['ENDED', 'FATAL']);
  expect(ended).toMatchObject({ status: 'ENDED', endReason: 'COMPLETED', platform: peer.platform });
  await waitFor(async () => (await peer.liveContainers()).length === 0, 'no container to be left');
  expect(logs).toEqual([]);
}

/**
 * The peer's down fault: its truth rejects until the fault ends, and answers again after. Its bot player may
 * log that it could not list the peer meanwhile, and nothing else.
 */
async function downAndBack({ peer, logs }: Started, kind: string): Promise<void> {
  const fault = peer.faults.find((candidate) => candidate.kind === kind)!;
  expect(fault).toBeDefined();
  const end = await fault.begin();
  try {
    await expect(peer.liveContainers()).rejects.toThrow();
  } finally {
    await end();
  }
  await waitFor(async () => Array.isArray(await peer.liveContainers()), 'the peer to answer again');
  for (const line of logs.splice(0)) expect(line).toMatch(/bot player: player: /);
}

/**
 * A failure on the peer's side (`kind`) while a bot is in its call: its container leaves the peer's truth, and
 * the fleet, seeing it gone, ends the bot CONTAINER_LOST.
 */
async function containerLost({ peer, t, logs }: Started, kind: string): Promise<void> {
  const id = await createBot(t, { metadata: { 'sim.durationMs': '120000' } });
  await waitForStatus(t, id, ['IN_CALL']);
  expect((await peer.liveContainers()).map((container) => container.botId)).toEqual([id]);
  const end = await peer.faults.find((fault) => fault.kind === kind)!.begin();
  await end();
  await waitFor(async () => (await peer.liveContainers()).length === 0, 'the failed container to leave the truth');
  expect(await waitForStatus(t, id, ['ENDED', 'FATAL'])).toMatchObject({
    status: 'FATAL',
    endReason: 'CONTAINER_LOST',
  });
  expect(logs).toEqual([]);
}

test('k8s: a bot placed through fleetEnv is the pod the API server lists until it ended; kube-apiserver down and back; a pod crash', async () => {
  const started = await peerAndFleet(startK8sPeer, directPaths, { K8S_IMAGE_PULL_LOCK_ENABLED: 'false' });
  expect(started.peer.fleetEnv.K8S_BOT_LIMIT).toBe('2');
  expect(readFileSync(started.peer.fleetEnv.K8S_KUBECONFIG, 'utf8')).toContain(
    `server: https://${started.opened.get('k8s')}\n`,
  );
  await anotherFleetsBot(started, { K8S_IMAGE_PULL_LOCK_ENABLED: 'false' });
  await placeOneBot(started);
  await downAndBack(started, 'k8s:apiserver-down');
  // the control plane works again: the next bot is placed and listed
  await placeOneBot(started);
  await containerLost(started, 'k8s:pod-crash');
});

test('aws through Toxiproxy: a bot placed through fleetEnv is the task moto lists until it ended; moto paused and back; a task stopped', async () => {
  const paths = await startToxiproxy(path.join(dir, 'toxiproxy'));
  closing.push(() => paths.close());
  const started = await peerAndFleet(startAwsPeer, paths);
  const address = started.opened.get('aws')!;
  expect(started.peer.fleetEnv).toMatchObject({ AWS_ENDPOINT_URL: `http://${address}`, AWS_BOT_LIMIT: '2' });
  expect(paths.faultsOf('aws').map((fault) => fault.kind)).toContain('aws:down');
  await anotherFleetsBot(started);
  await placeOneBot(started);
  await downAndBack(started, 'aws:moto-down');
  await placeOneBot(started);
  await containerLost(started, 'aws:task-stopped');
});

test('coolify: a bot placed through fleetEnv is the slot the Coolify server runs until it ended; its API down and back; a crash; failing deployments', async () => {
  const started = await peerAndFleet(startCoolifyPeer, directPaths, {
    COOLIFY_MEETING_PLATFORMS: 'zoom',
    COOLIFY_START_RETRIES: '0',
    SLOT_RECOVERY_INTERVAL_MS: '1000',
  });
  expect(started.peer.fleetEnv).toMatchObject({
    COOLIFY_API_URL: `http://${started.opened.get('coolify')}/api/v1`,
    COOLIFY_BOT_LIMIT: '2',
  });
  await anotherFleetsBot(started, { COOLIFY_MEETING_PLATFORMS: 'zoom' });
  await placeOneBot(started);
  await downAndBack(started, 'coolify:api-down');
  await placeOneBot(started);
  await containerLost(started, 'coolify:container-crash');
  // every deployment failing: the bot's only start fails, and nothing of it is left running
  const end = await started.peer.faults.find((fault) => fault.kind === 'coolify:deployments-fail')!.begin();
  const id = await createBot(started.t);
  expect(await waitForStatus(started.t, id, ['ENDED', 'FATAL'])).toMatchObject({
    status: 'FATAL',
    endReason: 'DEPLOY_FAILED',
  });
  expect(await started.peer.liveContainers()).toEqual([]);
  await end();
  await placeOneBot(started);
});
