import path from 'node:path';
import { freePort, StartedPeer, startFerretDb, startRedis } from '../../src/peers';
import { Fault, sleep } from './faults';

/**
 * The fleet's Redis (with its append-only file) and FerretDB, each on a port it keeps across restarts, so
 * the fleet's URLs stay valid when a fault kills one and the run starts it again on the same data.
 */
export interface Store {
  readonly url: string;
  readonly faults: Fault[];
  close(): Promise<void>;
}

/** Sends a signal to a peer process that may be gone already. */
function signal(peer: StartedPeer, name: NodeJS.Signals): void {
  try {
    if (peer.pid) process.kill(peer.pid, name);
  } catch {
    // it exited already
  }
}

/** Waits until the SIGKILLed process is gone, so its port is free for the restart. */
async function killed(peer: StartedPeer): Promise<void> {
  signal(peer, 'SIGCONT');
  signal(peer, 'SIGKILL');
  await peer.stop();
}

export async function startChaosRedis(dir: string): Promise<Store> {
  const dataDir = path.join(dir, 'redis');
  const port = await freePort();
  let peer = await startRedis(dataDir, port, true);
  return {
    url: peer.url,
    faults: [
      {
        kind: 'redis:kill',
        redis: true,
        async begin() {
          await killed(peer);
          return async () => {
            peer = await startRedis(dataDir, port, true);
          };
        },
      },
    ],
    close: () => peer.stop(),
  };
}

export async function startChaosMongo(dir: string): Promise<Store> {
  const dataDir = path.join(dir, 'ferretdb');
  const port = await freePort();
  let peer = await startFerretDb(dataDir, port);
  return {
    url: peer.url,
    faults: [
      {
        kind: 'mongodb:stop',
        begin() {
          signal(peer, 'SIGSTOP');
          return Promise.resolve(() => {
            signal(peer, 'SIGCONT');
            return Promise.resolve();
          });
        },
      },
      {
        kind: 'mongodb:kill',
        async begin() {
          await killed(peer);
          return async () => {
            peer = await startFerretDb(dataDir, port);
          };
        },
      },
    ],
    async close() {
      signal(peer, 'SIGCONT');
      await peer.stop();
      await sleep(0);
    },
  };
}
