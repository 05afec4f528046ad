import { playBots, startK8sPeer } from './support/k8s';
import { livesWhenPlayed } from './support/upstream-life';

/**
 * A bot image's whole life through the upstream protocol from the env its pod got from the real control
 * plane (its Secret's token included), played by the stand-in upstream bot image.
 */
jest.setTimeout(300_000);

livesWhenPlayed('k8s', 'its pod env', startK8sPeer, (peer) => playBots(peer, { protocol: 'upstream' }), {
  K8S_BOT_LIMIT: '5',
  K8S_IMAGE_PULL_LOCK_ENABLED: 'false',
});
