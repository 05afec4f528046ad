import { Redis } from 'ioredis';
import { Types } from 'mongoose';
import { checkAfterReconnect, LAST_WRITES_MS, onReconnected } from '../connections';
import { logger } from '../logger';
import { withTimeout } from '../retry';
import { Claim } from './bot-changes';
import { ClaimRecord } from './flusher';
import { IDEMPOTENCY_WINDOW_MS, IdempotencyDoc, Models } from './models';

/**
 * Idempotency-Keys live where the bot's create is decided: `<prefix>:idempotency:<record id>` in Redis holds
 * the key's record (JSON), taken in the same step that creates the bot (a `Claim` of the repository's
 * insert), so that exactly one create wins a key whichever process serves it, and a create needs no
 * MongoDB. The flusher keeps each record in MongoDB (`idempotency_keys`) like the bot. A create undone frees
 * its key through the same stream (BotRepository.remove), so MongoDB drops the record after it wrote it.
 *
 * Redis is not the record: when it lost its data, the records MongoDB holds that have not expired are put
 * back before any key is read again. `<prefix>:idempotency-restored` says that was done: it goes with the
 * rest of Redis's data, so a wiped Redis rebuilds the keys (test/idempotency.outage.test.ts). A Redis that
 * lost only its last writes (restarted from an append-only file fsynced every second, or failed over to a
 * replica that lagged) keeps that mark: so after every reconnection to another server (connections.ts
 * `onReconnected`) the records MongoDB holds from shortly before the connection was lost are put back too,
 * and keys are read only once that is done (bounded, as a MongoDB that does not answer cannot help).
 */
export interface IdempotencyKeys {
  /** The record of the key, or null: a key never used, or used longer ago than the window. */
  read(recordId: string): Promise<IdempotencyRecord | null>;
  /** What the bot's insert takes the key with. */
  claim(record: IdempotencyRecord & { _id: string }): Claim;
  /** Puts back the records MongoDB holds, unless that was done since Redis last lost its data. */
  restore(): Promise<void>;
}

/** A key's record as Redis and the change streams carry it. */
export interface IdempotencyRecord {
  owner: string;
  key: string;
  requestHash: string;
  botId: string;
  /** ms since the epoch */
  createdAt: number;
}

const RESTORE_BATCH = 500;
/** How long a key's read waits for the records to be put back after a reconnection (MongoDB may be away). */
const RECONCILE_WAIT_MS = 2_000;

/** A record as the flusher writes it to MongoDB (`RecordCodec.claim`). */
export function claimRecord({ botId, createdAt, ...record }: Record<string, unknown>): ClaimRecord {
  return {
    ...(record as { _id: string }),
    botId: new Types.ObjectId(botId as string),
    createdAt: new Date(createdAt as number),
  };
}

export function createIdempotencyKeys(
  redis: Redis,
  prefix: string,
  { Idempotency }: Pick<Models, 'Idempotency'>,
): IdempotencyKeys {
  const keyOf = (recordId: string) => `${prefix}:idempotency:${recordId}`;
  const restored = `${prefix}:idempotency-restored`;

  /** Puts back (NX) the records MongoDB holds that were created after `since` and have not expired. */
  const putBack = async (since: Date) => {
    const cursor = Idempotency.find({ createdAt: { $gt: since } })
      .lean<IdempotencyDoc[]>()
      .cursor({ batchSize: RESTORE_BATCH });
    let batch = redis.pipeline();
    let queued = 0;
    const send = async () => {
      for (const [error] of (await batch.exec()) ?? []) if (error) throw error;
      batch = redis.pipeline();
      queued = 0;
    };
    for await (const doc of cursor) {
      const lifetimeMs = doc.createdAt.getTime() + IDEMPOTENCY_WINDOW_MS - Date.now();
      if (lifetimeMs <= 0) continue;
      const record: IdempotencyRecord = {
        owner: doc.owner,
        key: doc.key,
        requestHash: doc.requestHash,
        botId: String(doc.botId),
        createdAt: doc.createdAt.getTime(),
      };
      // NX: a key taken since Redis lost its data keeps its bot
      batch.set(keyOf(doc._id), JSON.stringify({ _id: doc._id, ...record }), 'PX', lifetimeMs, 'NX');
      if (++queued === RESTORE_BATCH) await send();
    }
    await send();
  };

  // One restore at a time per process; every process that finds the mark missing restores (each is idempotent).
  let restoring: Promise<void> | undefined;
  const restore = async () => {
    if (await redis.exists(restored)) return;
    restoring ??= putBack(new Date(Date.now() - IDEMPOTENCY_WINDOW_MS))
      .then(() => redis.set(restored, String(Date.now())))
      .then(() => undefined)
      .finally(() => (restoring = undefined));
    await restoring;
  };

  // A Redis that restarted empty (or failed over) is restored while MongoDB answers, not at the next create;
  // one that kept its data but may have lost its last writes gets the records from around the loss back.
  let reconciling: Promise<void> | undefined;
  onReconnected(redis, (lostAt, sameServer) => {
    reconciling = (async () => {
      await restore();
      if (!(await sameServer)) await checkAfterReconnect(() => putBack(new Date(lostAt - LAST_WRITES_MS)));
    })()
      .catch((error: unknown) =>
        logger.warn('idempotency keys: not restored from MongoDB after Redis reconnected', { error: String(error) }),
      )
      .finally(() => (reconciling = undefined));
  });

  return {
    async read(recordId) {
      if (reconciling) await withTimeout(reconciling, RECONCILE_WAIT_MS).catch(() => undefined);
      const [mark, heldBefore] = await redis.mget(restored, keyOf(recordId));
      let held = heldBefore;
      if (mark === null) {
        await restore();
        held = await redis.get(keyOf(recordId));
      }
      return held === null ? null : (JSON.parse(held) as IdempotencyRecord);
    },
    claim: (record) => ({ key: keyOf(record._id), value: JSON.stringify(record), lifetimeMs: IDEMPOTENCY_WINDOW_MS }),
    restore,
  };
}
