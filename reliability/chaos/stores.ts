import path from 'node:path';
import { freePort, StartedPeer, startFerretDb, startRedis } from '../../src/peers';
import { startRedisSentinel } from '../../test/support/redis-sentinel';
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

/**
 * Redis as production runs it with high availability: a primary and a replica, both with their append-only
 * file, and three sentinels. Its fault kills the primary: the sentinels promote the replica, the fleet
 * follows them, and what the asynchronous replica had not received is rebuilt from MongoDB by the fleet's
 * recovery; at the fault's end the killed server comes back on its file as the new primary's replica. The
 * fleet reaches the servers at the addresses the sentinels name, so no network path of the run's is in
 * between.
 */
export async function startChaosSentinelRedis(
  dir: string,
): Promise<{ env: Record<string, string> } & Omit<Store, 'url'>> {
  const ha = await startRedisSentinel({ dir: path.join(dir, 'redis-sentinel') });
  return {
    env: ha.env,
    faults: [
      {
        kind: 'redis:failover',
        redis: true,
        async begin() {
          const old = await ha.killPrimary();
          await ha.failedOver(old, 60_000);
          return () => ha.restartKilled();
        },
      },
    ],
    close: () => ha.close(),
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
