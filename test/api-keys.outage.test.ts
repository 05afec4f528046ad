import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import mongoose from 'mongoose';
import { UnavailableError } from '../src/errors';
import { startFerretDb, StartedPeer } from '../src/peers';
import { ApiKeyInfo, createApiKeys } from '../src/services/api-keys.service';
import { createModels, Models } from '../src/store/models';
import { peerUrls, uniqueName } from './support/fleet';

/**
 * A process started while MongoDB does not answer (SIGSTOPped: connections hang) still serves the clients
 * whose keys the fleet's other processes found in MongoDB: they share them in Redis (hash and owner). A key
 * no process found is a 503, and a revoked key is forgotten. Each `createApiKeys` is a new process's view (an
 * empty cache); the chaos run found the 503 (RELIABILITY.md).
 */
let ferret: StartedPeer;
let connection: mongoose.Connection;
let models: Models;
let redis: IORedis;
const prefix = uniqueName('mbtest');
const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-api-keys-outage-'));

beforeAll(async () => {
  ferret = await startFerretDb(dir);
  connection = await mongoose.createConnection(`${ferret.url.replace(/\/meeboter$/, '')}/api_keys_test`).asPromise();
  models = await createModels(connection);
  redis = new IORedis(peerUrls().redisUrl);
});
afterAll(async () => {
  process.kill(ferret.pid!, 'SIGCONT');
  await connection.close(true);
  await ferret.stop();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
  rmSync(dir, { recursive: true, force: true });
});

const newProcess = (shared = true) => createApiKeys(models, shared ? { redis, prefix } : undefined);
const whileMongoHangs = async <T>(work: () => Promise<T>): Promise<T> => {
  process.kill(ferret.pid!, 'SIGSTOP');
  try {
    return await work();
  } finally {
    process.kill(ferret.pid!, 'SIGCONT');
  }
};

it('a new process checks a key another process found, refuses to guess an unknown one, and forgets a revoked one', async () => {
  const first = newProcess();
  const key = await first.create('acme');
  const unseen = await first.create('other');
  expect(await first.authenticate(key)).toMatchObject({ owner: 'acme' });

  await whileMongoHangs(async () => {
    expect(await newProcess().authenticate(key)).toMatchObject({ owner: 'acme' });
    // never looked up by any process: it cannot be checked without MongoDB
    await expect(newProcess().authenticate(unseen)).rejects.toBeInstanceOf(UnavailableError);
    // a process that shares nothing (as before): 503 for a key it never saw
    await expect(newProcess(false).authenticate(key)).rejects.toBeInstanceOf(UnavailableError);
  });

  const revoked = await first.revoke((await first.list()).find((info) => info.owner === 'acme')!.id);
  expect(revoked?.owner).toBe('acme');
  await whileMongoHangs(async () => {
    await expect(newProcess().authenticate(key)).rejects.toBeInstanceOf(UnavailableError);
  });
});

/**
 * The process's models, except that its lookup of a key runs `between` after MongoDB answered and before
 * the lookup goes on (to write what it found to Redis): a lookup racing another process's revoke.
 */
const lookupThen = (between: () => Promise<unknown>): Models => {
  const findById = (id: string) => ({
    lean: () => ({
      exec: async () => {
        const found = await models.ApiKey.findById(id).lean().exec();
        await between();
        return found;
      },
    }),
  });
  return { ...models, ApiKey: { findById } as unknown as Models['ApiKey'] };
};

it('a lookup that read a key just before its revoke does not share it after', async () => {
  const admin = newProcess();
  const key = await admin.create('racer');
  const id = (await admin.list()).find((info) => info.owner === 'racer')!.id;
  let revoked: ApiKeyInfo | null = null;
  const racing = createApiKeys(
    lookupThen(async () => (revoked = await admin.revoke(id))),
    { redis, prefix },
  );

  // its read came before the revoke (so this process trusts the key for its short cache), its write after
  expect(await racing.authenticate(key)).toMatchObject({ owner: 'racer' });
  expect(revoked).toMatchObject({ id, owner: 'racer' });
  await whileMongoHangs(async () => {
    await expect(newProcess().authenticate(key)).rejects.toBeInstanceOf(UnavailableError);
  });
});

it('a key revoked and made again (BOOTSTRAP_API_KEY) is shared again', async () => {
  const admin = newProcess();
  const key = `mbk_${uniqueName('bootstrap')}`;
  await admin.ensure(key, 'admin');
  const id = (await admin.list()).find((info) => info.owner === 'admin')!.id;
  expect(await admin.revoke(id)).toMatchObject({ owner: 'admin' });
  await admin.ensure(key, 'admin');
  expect(await newProcess().authenticate(key)).toMatchObject({ owner: 'admin' });
  await whileMongoHangs(async () => {
    expect(await newProcess().authenticate(key)).toMatchObject({ owner: 'admin' });
  });
});
