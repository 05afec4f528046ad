/**
 * The peer for the HTTP figures: a bare Express JSON POST handler on PORT, with nothing behind it.
 */
import express, { Request } from 'express';

const app = express();
app.use(express.json({ limit: '64kb' }));
// The body is what express.json() parsed: an object or array, or undefined when the request had none.
app.post('*splat', (req: Request<unknown, unknown, object | undefined>, res) => {
  res.status(200).json({ ok: true, received: Object.keys(req.body ?? {}).length });
});
app.listen(Number(process.env.PORT ?? 3999), '127.0.0.1');
