import os from 'node:os';
import path from 'node:path';

/** Where global setup leaves the URLs of the peers it started, for the test files to read. */
export const PEERS_FILE = path.join(os.tmpdir(), `meeboter-test-peers-${process.ppid}-${process.pid}.json`);
export const PEERS_ENV = 'MEEBOTER_TEST_PEERS_FILE';

export interface PeerUrls {
  redisUrl: string;
  mongodbUri: string;
}
