import { rmSync } from 'node:fs';
import { StartedPeer } from '../../src/peers';
import { PEERS_FILE } from './peers-file';

export default async function globalTeardown(): Promise<void> {
  const started = (globalThis as { __meeboterPeers?: StartedPeer[] }).__meeboterPeers ?? [];
  await Promise.all(started.map((peer) => peer.stop()));
  rmSync(PEERS_FILE, { force: true });
}
