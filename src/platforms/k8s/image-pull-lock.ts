import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { logger } from '../../logger';
import { ContainerStatus, DeployContext, Deployment } from '../platform';
import { RELEASE_LOCK, RENEW_LOCK } from '../../redis-script';

/**
 * K8S_IMAGE_PULL_LOCK_ENABLED: the first bot of an image starts alone, so that one node pulls a multi-GB
 * image once rather than once per pod; the other bots of that image wait until its pod runs (the image is
 * then on the node), across every worker process, through Redis.
 *
 * The lock is a Redis key with a short expiry that its holder keeps renewing from when it takes it until
 * its pod runs: a holder whose process died stops renewing and the lock expires within LOCK_TTL_MS. Once a
 * pod of the image ran, the image is marked pulled and later bots do not wait at all. Waiting happens only
 * inside deploy(), which the occupy job calls, never an HTTP request; it is bounded by the platform's start
 * timeout, after which a waiter starts anyway, and it holds no deploy slot (`outsideDeploySlot`), so bots
 * waiting for a pull never hold up the deploys of other images or platforms.
 */
export interface ImagePullLock {
  /**
   * Runs `create` for `image` once the lock allows it. `status` reads the created Job, for the holder to see
   * its pod run; a wait for another holder runs through `outsideDeploySlot`.
   */
  deploy(
    image: string,
    create: () => Promise<Deployment>,
    status: (identifier: string) => Promise<ContainerStatus>,
    outsideDeploySlot?: DeployContext['outsideDeploySlot'],
  ): Promise<Deployment>;
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

/** A lock this process holds: renewed until released, or until close() stops it. */
interface HeldLock {
  readonly stopped: boolean;
  release(): Promise<void>;
}

export function createImagePullLock(options: ImagePullLockOptions): ImagePullLock {
  const { redis, prefix, waitMs } = options;
  const held = new Set<{ stop(): void }>();
  const key = (image: string, what: 'lock' | 'pulled') => `${prefix}:k8s-pull:${what}:${image}`;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const isPulled = async (image: string) => (await redis.exists(key(image, 'pulled'))) === 1;

  /** Takes the lock if it is free, and renews it from then on. */
  const tryTake = async (image: string): Promise<HeldLock | null> => {
    const token = randomBytes(8).toString('hex');
    if (!(await redis.set(key(image, 'lock'), token, 'PX', LOCK_TTL_MS, 'NX'))) return null;
    const renew = setInterval(() => {
      RENEW_LOCK.run(redis, 1, key(image, 'lock'), token, LOCK_TTL_MS).catch((error) =>
        logger.warn('image pull lock: renew failed', { image, error: String(error) }),
      );
    }, RENEW_MS);
    let stopped = false;
    const handle = {
      stop: () => {
        stopped = true;
        clearInterval(renew);
      },
    };
    held.add(handle);
    return {
      get stopped() {
        return stopped;
      },
      async release() {
        handle.stop();
        held.delete(handle);
        await RELEASE_LOCK.run(redis, 1, key(image, 'lock'), token).catch((error) =>
          logger.warn('image pull lock: release failed', { image, error: String(error) }),
        );
      },
    };
  };

  /** Waits until the image is pulled or `deadline` passes (null: start without the lock), or the lock is ours. */
  const awaitTurn = async (image: string, deadline: number): Promise<HeldLock | null> => {
    for (;;) {
      await sleep(POLL_MS / 2 + Math.random() * POLL_MS);
      if (await isPulled(image)) return null;
      const lock = await tryTake(image);
      if (lock) return lock;
      if (Date.now() >= deadline) {
        logger.warn('image pull lock: waited the start timeout for the first pull; starting anyway', { image });
        return null;
      }
    }
  };

  /** Keeps the lock until the holder's pod runs (image pulled), ends, or waitMs passes. */
  const holdUntilPulled = (
    image: string,
    lock: HeldLock,
    identifier: string,
    status: (identifier: string) => Promise<ContainerStatus>,
  ) => {
    const deadline = Date.now() + waitMs;
    void (async () => {
      try {
        while (!lock.stopped && Date.now() < deadline) {
          const current = await status(identifier).catch(() => null);
          if (current?.state === 'running') {
            await redis.set(key(image, 'pulled'), '1', 'EX', PULLED_TTL_S);
            break;
          }
          if (current?.state === 'gone') break;
          await sleep(POLL_MS);
        }
      } finally {
        await lock.release();
      }
    })();
  };

  return {
    async deploy(image, create, status, outsideDeploySlot = (wait) => wait()) {
      const deadline = Date.now() + waitMs;
      if (await isPulled(image)) return create();
      let lock = await tryTake(image);
      if (!lock) {
        // Another bot's pod pulls the image: wait for it without holding a deploy slot.
        const turn: { lock: HeldLock | null } = { lock: null };
        try {
          await outsideDeploySlot(async () => {
            turn.lock = await awaitTurn(image, deadline);
          });
        } catch (error) {
          // taken, then shut down while waiting for the slot again: nobody else may wait on it
          await turn.lock?.release();
          throw error;
        }
        lock = turn.lock;
      }
      if (!lock) return create();
      let deployment: Deployment;
      try {
        deployment = await create();
      } catch (error) {
        await lock.release();
        throw error;
      }
      holdUntilPulled(image, lock, deployment.identifier, status);
      return deployment;
    },
    close() {
      for (const handle of held) handle.stop();
      held.clear();
      return Promise.resolve();
    },
  };
}
