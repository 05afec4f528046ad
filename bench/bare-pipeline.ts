/**
 * Floor peers for P2: the least a bot can cost with this stack. `api` is a bare Express JSON POST handler
 * that adds one BullMQ job and answers; `worker` is a BullMQ worker whose processor does nothing. No auth,
 * validation, MongoDB or platform: what P2 can never beat on the same machine.
 *
 * With `PROTOCOL=true` (the figure "P2 protocol floor") each bot also does what it does in P2 whatever the
 * design, and nothing more: the job starts the bot (in the worker, where a sim host would), which makes the
 * bot protocol's four calls (config, one heartbeat, reports JOINING_CALL and IN_CALL) to no-op handlers; the
 * bot document and its four status events (QUEUED, DEPLOYING, JOINING_CALL, IN_CALL) are recorded in
 * MongoDB with batched inserts only, no update, no index but _id. Still no auth, validation or Redis state.
 *
 * With `STAMP=true` (the figure "P1 protocol floor") the worker also stamps when each job started, by Redis's
 * clock as the sim host stamps a deploy call (`<prefix>:floor:started`, bot id → ms), for the latency of a
 * create at a steady rate.
 */
import express, { Request } from 'express';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';
import mongoose from 'mongoose';
import { Agent } from 'undici';
import { SIM_BOT_CONNECTIONS } from '../src/platforms/sim/sim.platform';

const role = process.argv[2];
const connection = new IORedis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const prefix = process.env.PREFIX!;
const protocol = process.env.PROTOCOL === 'true';
const stamp = process.env.STAMP === 'true';
const apiUrl = `http://127.0.0.1:${process.env.PORT}`;

type Document = Record<string, unknown>;
/** What the floor reads of the bodies it is sent. */
type StatusReport = { status: string };
type CreateBot = { meeting?: unknown; metadata?: Record<string, unknown> };

/**
 * Batched inserts, as a flusher would make them: up to 100 documents a call, at most 4 calls at once. The
 * documents written are counted in Redis (`<prefix>:floor` `recorded`), the API's and the worker's together.
 */
function createRecorder(uri: string) {
  const client = new mongoose.mongo.MongoClient(uri);
  const pending = new Map<string, Document[]>();
  let inFlight = 0;
  const flush = () => {
    for (const [collection, documents] of pending) {
      while (documents.length > 0 && inFlight < 4) {
        const batch = documents.splice(0, 100);
        inFlight++;
        client
          .db()
          .collection(collection)
          .insertMany(batch, { ordered: false })
          .then(
            () => connection.hincrby(`${prefix}:floor`, 'recorded', batch.length),
            (error) => process.stderr.write(`bare pipeline: insert failed: ${error}\n`),
          )
          .finally(() => {
            inFlight--;
            flush();
          });
      }
    }
  };
  setInterval(flush, 10).unref();
  return {
    add(collection: string, document: Document) {
      const documents = pending.get(collection) ?? [];
      documents.push(document);
      pending.set(collection, documents);
      if (documents.length >= 100) flush();
    },
  };
}

const recorder = protocol ? createRecorder(process.env.MONGODB_URI!) : undefined;
const statusEvent = (botId: string, status: string) =>
  recorder!.add('bot_events', { botId, type: 'status', status, at: new Date() });

if (role === 'api') {
  const queue = new Queue('bare', { connection, prefix });
  const app = express();
  app.use(express.json({ limit: '64kb' }));
  let inCall = 0;
  app.get('/floor/stats', (_req, res) => void res.json({ inCall }));
  // what a client opening its connections asks first (the bench's paced creates do)
  app.get('/api/bots', (_req, res) => void res.json({ data: [] }));
  app.get('/api/bots/:id/config', (req, res) => {
    res.json({
      id: req.params.id,
      meeting: { platform: 'zoom', meetingId: '1' },
      displayName: 'bot',
      heartbeatIntervalMs: 30_000,
    });
  });
  app.post('/api/bots/:id/heartbeat', (_req, res) => void res.json({ shouldLeave: false }));
  app.post('/api/bots/:id/status', (req: Request<{ id: string }, unknown, StatusReport>, res) => {
    statusEvent(req.params.id, req.body.status);
    if (req.body.status === 'IN_CALL') inCall++;
    res.json({ ok: true });
  });
  app.post('*splat', async (req: Request<unknown, unknown, CreateBot>, res) => {
    const botId = new mongoose.Types.ObjectId().toHexString();
    if (recorder) {
      const now = new Date();
      recorder.add('bots', {
        _id: botId,
        status: 'QUEUED',
        meeting: req.body.meeting,
        metadata: Object.entries(req.body.metadata ?? {}).map(([key, value]) => ({ key, value })),
        createdAt: now,
      });
      statusEvent(botId, 'QUEUED');
    }
    await queue.add('create', { botId }, { removeOnComplete: false });
    res.status(201).json({ id: botId });
  });
  app.listen(Number(process.env.PORT), '127.0.0.1');
} else {
  // As many keep-alive connections as a sim host's bots share.
  const connections = new Agent({ connections: SIM_BOT_CONNECTIONS });
  // undici's request, the least an HTTP call costs in Node (its fetch costs about twice as much).
  const call = async (method: 'GET' | 'POST', botId: string, path: string, body?: unknown) => {
    const response = await connections.request({
      origin: apiUrl,
      path: `/api/bots/${botId}/${path}`,
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    await response.body.json();
  };
  const stampStart = async (botId: string) => {
    const [seconds, micros] = await connection.time();
    await connection.hset(`${prefix}:floor:started`, botId, Number(seconds) * 1000 + Math.floor(Number(micros) / 1000));
  };
  const runBot = async (botId: string) => {
    await call('GET', botId, 'config');
    await call('POST', botId, 'heartbeat', {});
    await call('POST', botId, 'status', { status: 'JOINING_CALL' });
    await call('POST', botId, 'status', { status: 'IN_CALL' });
  };
  new Worker<{ botId?: string }>(
    'bare',
    (job) => {
      if (stamp && job.data.botId)
        stampStart(job.data.botId).catch((error) => process.stderr.write(`bare pipeline: stamp failed: ${error}\n`));
      if (protocol && job.data.botId) {
        statusEvent(job.data.botId, 'DEPLOYING');
        // The deploy call returns once the container starts; the bot runs on its own.
        runBot(job.data.botId).catch((error) => process.stderr.write(`bare pipeline: bot failed: ${error}\n`));
      }
      return Promise.resolve();
    },
    { connection, prefix, concurrency: 50 },
  );
}
