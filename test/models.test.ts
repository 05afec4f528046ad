import { Connection } from 'mongoose';
import { createMongo } from '../src/connections';
import { createLogger, setLogger } from '../src/logger';
import { createModels, IDEMPOTENCY_WINDOW_MS } from '../src/store/models';
import { peerUrls, testDatabaseUri, uniqueName } from './support/fleet';

/**
 * The records of Idempotency-Keys are kept in MongoDB while their keys are honoured (24 h), then deleted by a
 * TTL index on `createdAt`. FerretDB 1.x (the test peer) implements no TTL index: there the fleet starts
 * without it, saying so.
 */
const logs: string[] = [];
setLogger(createLogger({ level: 'info', write: (line) => logs.push(line) }));
let connection: Connection;
beforeAll(async () => {
  connection = await createMongo(testDatabaseUri(peerUrls().mongodbUri, uniqueName('meeboter_test_models')));
});
afterAll(async () => {
  await connection.dropDatabase().catch(() => undefined);
  await connection.close();
});

it('idempotency records expire 24 h after their create, where the server implements TTL indexes; elsewhere it starts without', async () => {
  expect(IDEMPOTENCY_WINDOW_MS).toBe(24 * 3600 * 1000);
  // twice: a restart finds the collections and indexes there
  await createModels(connection);
  const { Idempotency } = await createModels(connection);

  const ttl = (await Idempotency.collection.indexes()).find((index) => index.key.createdAt === 1);
  const server = await connection.db!.admin().command({ buildInfo: 1 });
  if (server.ferretdbVersion) {
    expect(ttl).toBeUndefined();
    const warnings = logs.filter((line) => line.includes('idempotency_keys: this server implements no TTL index'));
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain('expireAfterSeconds');
  } else {
    expect(ttl).toMatchObject({ expireAfterSeconds: 24 * 3600 });
  }
});
