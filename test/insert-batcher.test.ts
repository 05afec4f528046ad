import { mongo, Types } from 'mongoose';
import { createInsertBatcher } from '../src/store/insert-batcher';
import { startTestFleet, TestFleet } from './support/fleet';

/** Group commit against the real peer: many concurrent inserts, few round trips, each caller told its own fate. */
let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim' }, { api: false, workers: false });
});
afterAll(() => t.close());

it('300 concurrent inserts share batches; only the duplicates are refused, each with the server code', async () => {
  const real = t.fleet.mongo.db!.collection('batcher_test');
  let calls = 0;
  const counted = {
    insertMany: (docs: mongo.Document[], options: mongo.BulkWriteOptions) => {
      calls++;
      return real.insertMany(docs, options);
    },
  } as unknown as mongo.Collection;
  const batcher = createInsertBatcher(counted);

  const existing = new Types.ObjectId();
  await real.insertOne({ _id: existing, n: -1 });
  const ids = Array.from({ length: 280 }, () => new Types.ObjectId());
  // 20 duplicates: 10 of documents already stored, 10 of documents in the same burst
  const docs = [
    ...ids.map((_id, n) => ({ _id, n })),
    ...Array.from({ length: 10 }, (_, n) => ({ _id: existing, n: 1000 + n })),
    ...ids.slice(0, 10).map((_id, n) => ({ _id, n: 2000 + n })),
  ];
  const results = await Promise.allSettled(docs.map((doc) => batcher.insert(doc)));

  const refused = results.flatMap((result, index) => (result.status === 'rejected' ? [{ index, code: result.reason.code }] : []));
  // of two inserts of one id, exactly one lands; which one is the server's choice within an unordered batch
  expect(refused).toHaveLength(20);
  expect(refused.every((r) => r.code === 11000)).toBe(true);
  expect(refused.filter((r) => docs[r.index]._id.equals(existing))).toHaveLength(10);
  expect(await real.countDocuments({})).toBe(281);
  const stored = await real.find({ _id: { $in: ids.slice(0, 10) } }).toArray();
  for (const doc of stored) {
    const landed = results.findIndex((result, index) => result.status === 'fulfilled' && docs[index]._id.equals(doc._id));
    expect(docs[landed].n).toBe(doc.n);
  }
  expect(calls).toBeGreaterThanOrEqual(3); // 300 documents, at most 100 a call
  expect(calls).toBeLessThan(30);
});

it('an error that is not about one document fails every insert of its batch', async () => {
  const batcher = createInsertBatcher({
    insertMany: async () => {
      throw new Error('connection closed');
    },
  } as unknown as mongo.Collection);
  const results = await Promise.allSettled([1, 2, 3].map((n) => batcher.insert({ n })));
  expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
});
