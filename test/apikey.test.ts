import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { createApiKeys } from '../src/services/api-keys.service';
import { startTestFleet, TestFleet } from './support/fleet';

/** `npm run apikey -- create|list|revoke` against the fleet's own database. */
let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet({}, { api: true, workers: false });
});
afterAll(() => t.close());

function apikey(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return apikeyWith({ REDIS_URL: t.urls.redisUrl, REDIS_PREFIX: t.env.REDIS_PREFIX }, ...args);
}

function apikeyWith(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.resolve(__dirname, '../dist/scripts/apikey.js'), ...args], {
      env: { PATH: process.env.PATH ?? '', MONGODB_URI: t.urls.mongodbUri, LOG_LEVEL: 'error', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

it('creates a key that works, lists it without showing it, and revokes it', async () => {
  const created = await apikey('create', 'cli-owner');
  expect(created.code).toBe(0);
  const key = created.stdout.trim().split('\n').pop()!;
  expect(key).toMatch(/^mbk_[\w-]{43}$/);
  expect((await t.request('GET', '/api/bots', { auth: key })).status).toBe(200);

  const listed = await apikey('list');
  expect(listed.code).toBe(0);
  expect(listed.stdout).not.toContain(key);
  const line = listed.stdout.split('\n').find((l) => l.includes('cli-owner'))!;
  const id = line.split(/\s+/)[0];
  expect(id).toMatch(/^[0-9a-f]{12}$/);

  // the fleet found the key, so it shares it in Redis for an outage of MongoDB
  const known = `${t.env.REDIS_PREFIX}:api-keys:known:${createHash('sha256').update(key).digest('hex')}`;
  expect(await t.fleet.redis.get(known)).toBe('cli-owner');
  // a Redis that does not answer: nothing revoked
  const noRedis = await apikeyWith(
    { REDIS_URL: 'redis://127.0.0.1:1', REDIS_PREFIX: t.env.REDIS_PREFIX },
    'revoke',
    id,
  );
  expect(noRedis).toMatchObject({ code: 1, stderr: expect.stringContaining('nothing was revoked') });
  expect((await apikey('list')).stdout).toContain(id);

  expect(await apikey('revoke', id)).toMatchObject({ code: 0, stdout: `revoked ${id} (owner cli-owner)\n` });
  // no longer shared, and marked so that no process shares it again (api-keys.outage.test.ts)
  expect(await t.fleet.redis.get(known)).toBeNull();
  expect(await t.fleet.redis.exists(known.replace(':known:', ':revoked:'))).toBe(1);
  // Any process without the key cached refuses it at once (a cached one within 30 s).
  expect(await createApiKeys(t.fleet.models).authenticate(key)).toBeNull();
  expect((await apikey('list')).stdout).not.toContain(id);
  expect(await apikey('revoke', id)).toMatchObject({ code: 1 });
});

it('answers a wrong command with its usage and exit code 2', async () => {
  expect(await apikey('delete', 'x')).toMatchObject({
    code: 2,
    stderr: expect.stringContaining('usage: npm run apikey'),
  });
  expect(await apikey('create')).toMatchObject({ code: 2 });
});
