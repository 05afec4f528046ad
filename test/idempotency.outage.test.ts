import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFerretDb, StartedPeer } from '../src/peers';
import { meetings, startTestFleet, TestFleet } from './support/fleet';

/**
 * A create with an `Idempotency-Key` while MongoDB refuses connections: the key's record lives in MongoDB, so
 * the answer is 503 with the reason and nothing is created, not a 500 (the chaos run found the 500,
 * RELIABILITY.md); once MongoDB is back the same request creates the bot. Uses a FerretDB of its own.
 */
let ferret: StartedPeer;
let t: TestFleet;
const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-idempotency-outage-'));

beforeAll(async () => {
  ferret = await startFerretDb(dir);
  t = await startTestFleet({ MONGODB_URI: ferret.url });
});
afterAll(async () => {
  await t.close();
  await ferret.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('answers 503 naming the key while MongoDB is down, and creates the bot once it is back', async () => {
  const create = () =>
    t.request('POST', '/api/bots', { body: { meeting: meetings.zoom }, headers: { 'idempotency-key': 'outage-1' } });
  // the API key is checked (and cached) while MongoDB answers
  expect((await t.request('GET', '/api/bots/000000000000000000000000')).status).toBe(404);
  const port = Number(new URL(ferret.url).port);
  await ferret.stop();

  const refused = await create();
  expect(refused.status).toBe(503);
  expect(refused.body.error).toMatchObject({ code: 'UNAVAILABLE' });
  expect(refused.body.error.message).toMatch(/Idempotency-Key: MongoDB does not answer/);

  ferret = await startFerretDb(dir, port);
  const created = await create();
  expect(created.status).toBe(201);
  expect((await create()).body.id).toBe(created.body.id);
});
