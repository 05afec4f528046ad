import { checkReadiness } from '../../readiness';
import { Handler } from '../http';

/** GET /healthz — the process answers. */
export const healthHandler: Handler = () => Promise.resolve({ status: 200, body: { ok: true } });

/**
 * GET /readyz — 200 while Redis answers (the process serves), 503 when it does not. MongoDB's state and the
 * bot changes not in MongoDB yet are in the answer as `degraded`, without making the process unready (see
 * src/readiness.ts).
 */
export const readyHandler: Handler = async (_req, ctx) => {
  const readiness = await checkReadiness(ctx);
  return { status: readiness.ready ? 200 : 503, body: readiness };
};
