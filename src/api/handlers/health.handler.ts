import { FlusherStatus } from '../../store/flusher';
import { Handler } from '../http';

/** GET /healthz — the process answers. */
export const healthHandler: Handler = async () => ({ status: 200, body: { ok: true } });

/**
 * GET /readyz — Redis and MongoDB both answer within a second; 503 naming the one that does not. It also
 * says whether this process's flusher is lagging (MongoDB refuses its writes) and how many bot changes are
 * not in MongoDB yet. A lagging flusher alone does not make the process unready: Redis keeps deciding and
 * placing, and the flusher catches up once MongoDB is back.
 */
export const readyHandler: Handler = async (_req, ctx) => {
  const check = async (probe: () => Promise<unknown>) => {
    try {
      await Promise.race([probe(), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000))]);
      return 'ok';
    } catch (error) {
      return `unavailable: ${error instanceof Error ? error.message : String(error)}`;
    }
  };
  let flush: FlusherStatus | undefined;
  const [redis, mongodb] = await Promise.all([
    check(() => ctx.redis.ping()),
    check(() => ctx.mongo.db!.admin().ping()),
    check(async () => (flush = await ctx.flusher.status())),
  ]);
  const lagging = flush?.partitions.find((partition) => partition.held && partition.lastError);
  const flusher = !flush ? 'unknown: Redis does not answer' : lagging ? `lagging: ${lagging.lastError}` : 'ok';
  const unflushedChanges = flush ? flush.partitions.reduce((sum, partition) => sum + partition.backlog, 0) : null;
  const ready = redis === 'ok' && mongodb === 'ok';
  return { status: ready ? 200 : 503, body: { ready, checks: { redis, mongodb, flusher }, unflushedChanges } };
};
