import { BotPlayer } from './support/bot-player';
import { K8sPeer, playBots, startK8sPeer } from './support/k8s';
import { meetings, startTestFleet, TestFleet } from './support/fleet';
import { livesThroughTrpc } from './support/upstream-life';

/**
 * A bot image's whole life through the upstream protocol from the env its pod got from the real control
 * plane (its Secret's token included), played by the stand-in upstream bot image.
 */
jest.setTimeout(300_000);
const HEARTBEAT_TIMEOUT_MS = 3000;

let peer: K8sPeer;
let player: BotPlayer;
let t: TestFleet;
beforeAll(async () => {
  peer = await startK8sPeer();
  t = await startTestFleet({
    PLATFORM_PRIORITY: 'k8s',
    K8S_BOT_LIMIT: '5',
    K8S_IMAGE_PULL_LOCK_ENABLED: 'false',
    HEARTBEAT_TIMEOUT_MS: String(HEARTBEAT_TIMEOUT_MS),
    SWEEP_INTERVAL_MS: '500',
    LEAVE_GRACE_MS: '60000',
    ...peer.env,
  });
  player = playBots(peer, { protocol: 'upstream' });
}, 300_000);
afterAll(async () => {
  await player?.stop();
  await t?.close();
  await peer?.close();
});

it('a bot lives its whole life from its pod env', async () => {
  await livesThroughTrpc(t, meetings.zoom, HEARTBEAT_TIMEOUT_MS);
  expect(player.errors).toEqual([]);
  for (const env of player.played.values()) expect(env.BOT_ID).toMatch(/^[1-9][0-9]*$/);
});
