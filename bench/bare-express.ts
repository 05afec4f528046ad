/**
 * The peer for the HTTP figures: a bare Express JSON POST handler on PORT, with nothing behind it.
 */
import express from 'express';

const app = express();
app.use(express.json({ limit: '64kb' }));
app.post('*splat', (req, res) => {
  res.status(200).json({ ok: true, received: Object.keys(req.body ?? {}).length });
});
app.listen(Number(process.env.PORT ?? 3999), '127.0.0.1');
