/**
 * A floor peer for P2: the least a create can cost with this stack. `api` is a bare Express JSON POST
 * handler that adds one BullMQ job and answers; `worker` is a BullMQ worker whose processor does nothing.
 * No auth, validation, MongoDB or platform: what P2 can never beat on the same machine.
 */
import express from 'express';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const role = process.argv[2];
const connection = new IORedis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const prefix = process.env.PREFIX!;

if (role === 'api') {
  const queue = new Queue('bare', { connection, prefix });
  const app = express();
  app.use(express.json({ limit: '64kb' }));
  app.post('*splat', async (req, res) => {
    const job = await queue.add('create', req.body, { removeOnComplete: false });
    res.status(201).json({ id: job.id });
  });
  app.listen(Number(process.env.PORT), '127.0.0.1');
} else {
  new Worker('bare', async () => undefined, { connection, prefix, concurrency: 50 });
}
