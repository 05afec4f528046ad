import mongoose from 'mongoose';
import { keptFleetId } from '../src/store/fleet-identity';
import { cleanup, peerUrls, startTestFleet, testDatabaseUri, uniqueName } from './support/fleet';

/**
 * A fleet without FLEET_ID makes its identity once and keeps it in MongoDB (README "Configuration", FLEET_ID):
 * every process of the fleet, starting at once or later, after Redis lost its data, reads the same one; an
 * explicit FLEET_ID wins; a database used before identities were kept keeps the old default, REDIS_PREFIX.
 */
jest.setTimeout(120_000);

const connect = (dbName: string) =>
  mongoose.createConnection(testDatabaseUri(peerUrls().mongodbUri, dbName)).asPromise();

it('processes of one fleet starting at once all agree on one identity, made once', async () => {
  const dbName = uniqueName('meeboter_test_identity');
  const connections = await Promise.all(Array.from({ length: 6 }, () => connect(dbName)));
  try {
    const ids = await Promise.all(
      connections.flatMap((connection) => [keptFleetId(connection, 'mbfleet'), keptFleetId(connection, 'mbfleet')]),
    );
    expect(new Set(ids).size).toBe(1);
    expect(ids[0]).toMatch(/^mbfleet-[0-9a-f]{12}$/);
    expect(await connections[0].collection('fleet').countDocuments()).toBe(1);
  } finally {
    await connections[0].dropDatabase();
    await Promise.all(connections.map((connection) => connection.close()));
  }
});

it('a database that already holds bots keeps REDIS_PREFIX, the identity its containers were started with', async () => {
  const dbName = uniqueName('meeboter_test_identity');
  const connection = await connect(dbName);
  try {
    await connection.collection('bots').insertOne({ status: 'IN_CALL' });
    expect(await keptFleetId(connection, 'mbfleet')).toBe('mbfleet');
    // and keeps it once stored, whatever the collections hold later
    await connection.collection('bots').deleteMany({});
    expect(await keptFleetId(connection, 'mbfleet')).toBe('mbfleet');
  } finally {
    await connection.dropDatabase();
    await connection.close();
  }
});

it('a fleet keeps its identity across restarts and a Redis that lost its data; an explicit FLEET_ID wins', async () => {
  const dbName = uniqueName('meeboter_test_identity');
  const first = await startTestFleet({ __DB: dbName }, { api: true, workers: true });
  const prefix = first.env.REDIS_PREFIX;
  const kept = first.fleet.fleetId;
  expect(first.fleet.config.fleetId).toBe(kept);
  await first.fleet.shutdown.close();
  await cleanup(
    { ...first.urls, mongodbUri: testDatabaseUri(first.urls.mongodbUri, uniqueName('meeboter_test_unused')) },
    prefix,
  ); // Redis only

  const again = await startTestFleet({ __DB: dbName, REDIS_PREFIX: prefix }, { api: true, workers: true });
  try {
    expect(again.fleet.fleetId).toBe(kept);
  } finally {
    await again.fleet.shutdown.close();
  }
  const named = await startTestFleet(
    { __DB: dbName, REDIS_PREFIX: prefix, FLEET_ID: 'named-fleet' },
    { api: true, workers: false },
  );
  try {
    expect(named.fleet.fleetId).toBe('named-fleet');
  } finally {
    await named.close();
  }
});
