import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startMissingPeers, StartedPeer } from '../../src/peers';
import { PEERS_ENV, PEERS_FILE, PeerUrls } from './peers-file';

/**
 * Starts one redis-server and one FerretDB for the whole run, on free loopback ports, unless REDIS_URL /
 * MONGODB_URI point at existing ones. Each test file then uses its own Redis prefix and its own database.
 */
export default async function globalSetup(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-test-'));
  const { redisUrl, mongodbUri, started } = await startMissingPeers(dir, {
    redisUrl: process.env.REDIS_URL,
    mongodbUri: process.env.MONGODB_URI,
  });
  const urls: PeerUrls = { redisUrl, mongodbUri };
  writeFileSync(PEERS_FILE, JSON.stringify(urls));
  process.env[PEERS_ENV] = PEERS_FILE;
  (globalThis as { __meeboterPeers?: StartedPeer[] }).__meeboterPeers = started;
  process.stdout.write(`\ntest peers: redis ${redisUrl}, mongodb ${mongodbUri}; node ${process.version}\n`);
}
