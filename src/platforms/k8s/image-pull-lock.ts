import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { logger } from '../../logger';
import { ContainerStatus, Deployment } from '../platform';
import { RELEASE_LOCK, RENEW_LOCK } from '../../redis-script';

/**
 * K8S_IMAGE_PULL_LOCK_ENABLED: the first bot of an image starts alone, so that one node pulls a multi-GB
 * image once rather than once per pod; the other bots of that image wait until its pod runs (the image is
 * then on the node), across every worker process, through Redis.
 *
 * The lock is a Redis key with a short expiry that its holder keeps renewing while its pod starts: a holder
 * whose process died stops renewing and the lock expires within LOCK_TTL_MS. Once a pod of the image ran,
 * the image is marked pulled and later bots do not wait at all. Waiting happens only inside deploy(), which
 * the occupy job calls, never an HTTP request, and is bounded by the platform's start timeout, after which a
 * waiter starts anyway.
 */
export interface ImagePullLock {
  /**
   * Runs `create` for `image` once the lock allows it. `status` reads the created Job, for the holder to see
   * its pod run.
   */
  deploy(image: string, create: () => Promise<Deployment>, status: (identifier: string) => Promise<ContainerStatus>): Promise<Deployment>;
  close(): Promise<void>;
}

export interface ImagePullLockOptions {
  redis: Redis;
  prefix: string;
  /** How long a bot waits for the lock, and how long a holder keeps it while its pod starts. */
  waitMs: number;
}

const LOCK_TTL_MS = 10_000;
const RENEW_MS = 2_000;
const POLL_MS = 1_000;
/** Nodes keep pulled images for a long time; a day later the next bot simply pulls first again. */
const PULLED_TTL_S = 24 * 3600;

export function createImagePullLock(options: ImagePullLockOptions): ImagePullLock {
  const { redis, prefix, waitMs } = options;
  const held = new Set<{ stop(): void }>();
  const key = (image: string, what: 'lock' | 'pulled') => `${prefix}:k8s-pull:${what}:${image}`;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Holds the lock until the holder's pod runs (image pulled), ends, or waitMs passes; renews meanwhile. */
  const hold = (image: string, token: string, identifier: string, status: (identifier: string) => Promise<ContainerStatus>) => {
    const deadline = Date.now() + waitMs;
    let stopped = false;
    const renew = setInterval(() => {
      RENEW_LOCK.run(redis, 1, key(image, 'lock'), token, LOCK_TTL_MS).catch((error) => logger.warn('image pull lock: renew failed', { image, error: String(error) }));
    }, RENEW_MS);
    const handle = { stop: () => { stopped = true; clearInterval(renew); } };
    held.add(handle);
    void (async () => {
      try {
        while (!stopped && Date.now() < deadline) {
          const current = await status(identifier).catch(() => null);
          if (current?.state === 'running') {
            await redis.set(key(image, 'pulled'), '1', 'EX', PULLED_TTL_S);
            break;
          }
          if (current?.state === 'gone') break;
          await sleep(POLL_MS);
        }
      } finally {
        handle.stop();
        held.delete(handle);
        await RELEASE_LOCK.run(redis, 1, key(image, 'lock'), token).catch((error) => logger.warn('image pull lock: release failed', { image, error: String(error) }));
      }
    })();
  };

  return {
    async deploy(image, create, status) {
      const deadline = Date.now() + waitMs;
      for (;;) {
        if (await redis.exists(key(image, 'pulled'))) return create();
        const token = randomBytes(8).toString('hex');
        if (await redis.set(key(image, 'lock'), token, 'PX', LOCK_TTL_MS, 'NX')) {
          let deployment: Deployment;
          try {
            deployment = await create();
          } catch (error) {
            await RELEASE_LOCK.run(redis, 1, key(image, 'lock'), token);
            throw error;
          }
          hold(image, token, deployment.identifier, status);
          return deployment;
        }
        if (Date.now() >= deadline) {
          logger.warn('image pull lock: waited the start timeout for the first pull; starting anyway', { image });
          return create();
        }
        await sleep(POLL_MS / 2 + Math.random() * POLL_MS);
      }
    },
    async close() {
      for (const handle of held) handle.stop();
      held.clear();
    },
  };
}
