import { PeerContext, PlatformPeer } from '../platform-peer';
import { startLocalPeer } from './local';

/**
 * Each platform the run can put in PLATFORM_PRIORITY, with the starter of its peer. Only platforms whose
 * peer has a truth of its own are here: `sim` is not (see RELIABILITY.md).
 */
export const PEER_STARTERS: Record<string, (ctx: PeerContext) => Promise<PlatformPeer>> = {
  local: startLocalPeer,
};

/** The limit each platform gets in a run: small, so bots queue and fall back all the time. */
export const PEER_LIMITS: Record<string, number> = {
  local: 4,
};
