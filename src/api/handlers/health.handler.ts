import { Handler } from '../http';

/** GET /healthz — the process answers. */
export const healthHandler: Handler = async () => ({ status: 200, body: { ok: true } });

/** GET /readyz — Redis and MongoDB both answer within a second; 503 naming the one that does not. */
export const readyHandler: Handler = async (_req, ctx) => {
  const check = async (probe: () => Promise<unknown>) => {
    try {
      await Promise.race([probe(), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000))]);
      return 'ok';
    } catch (error) {
      return `unavailable: ${error instanceof Error ? error.message : String(error)}`;
    }
  };
  const [redis, mongodb] = await Promise.all([
    check(() => ctx.redis.ping()),
    check(() => ctx.mongo.db!.admin().ping()),
  ]);
  const ready = redis === 'ok' && mongodb === 'ok';
  return { status: ready ? 200 : 503, body: { ready, checks: { redis, mongodb } } };
};
