/**
 * The peer for the HTTP figures: a bare Express JSON POST handler on PORT, with nothing behind it.
 *
 * With TRPC=true, the floor of the upstream bot protocol instead: tRPC's own Express adapter with the
 * superjson transformer at /api/trpc, and a `bots.sendHeartbeat` that does nothing (no auth, no Redis), so
 * what the fleet's P3 tRPC costs beyond the library itself shows.
 */
import express, { Request } from 'express';
import { initTRPC } from '@trpc/server';
import { createExpressMiddleware } from '@trpc/server/adapters/express';
import superjson from 'superjson';

const app = express();
if (process.env.TRPC === 'true') {
  const t = initTRPC.create({ transformer: superjson });
  const router = t.router({
    bots: t.router({
      sendHeartbeat: t.procedure
        .input((input: unknown) => input)
        .mutation(() => ({ shouldLeave: false, logLevel: null })),
    }),
  });
  app.use('/api/trpc', createExpressMiddleware({ router }));
}
app.use(express.json({ limit: '64kb' }));
// The body is what express.json() parsed: an object or array, or undefined when the request had none.
app.post('*splat', (req: Request<unknown, unknown, object | undefined>, res) => {
  res.status(200).json({ ok: true, received: Object.keys(req.body ?? {}).length });
});
app.listen(Number(process.env.PORT ?? 3999), '127.0.0.1');
