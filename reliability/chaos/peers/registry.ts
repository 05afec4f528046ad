import { PeerContext, PlatformPeer } from '../platform-peer';
import { startAwsPeer } from './aws';
import { startCoolifyPeer } from './coolify';
import { startK8sPeer } from './k8s';
import { startLocalPeer } from './local';

/**
 * Each platform the run can put in PLATFORM_PRIORITY, with the starter of its peer. Only platforms whose
 * peer has a truth of its own are here: `sim` is not (see RELIABILITY.md).
 */
export const PEER_STARTERS: Record<string, (ctx: PeerContext) => Promise<PlatformPeer>> = {
  k8s: startK8sPeer,
  aws: startAwsPeer,
  coolify: startCoolifyPeer,
  local: startLocalPeer,
};

/** The limit each platform gets in a run: small, so bots queue and fall back all the time. */
export const PEER_LIMITS: Record<string, number> = {
  k8s: 3,
  aws: 3,
  coolify: 2,
  local: 3,
};

/** What `npm run chaos` runs without `--platforms`: every platform with a truth of its own, in this order. */
export const ALL_PLATFORMS = Object.keys(PEER_STARTERS);
