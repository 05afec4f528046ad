import {
  baseEnv,
  cleanup,
  httpRequest,
  peerUrls,
  pidOf,
  spawnFleetProcess,
  testDatabaseUri,
  uniqueName,
  waitFor,
} from './support/fleet';

/**
 * What a newcomer sees: `node dist/src/main.js` with the embedded defaults (PLATFORM_PRIORITY=local, the sim
 * bot as LOCAL_BOT_COMMAND), one POST like the README's curl, and the bot runs to ENDED as a real process.
 */
jest.setTimeout(120_000);

it('runs a local sim bot through DEPLOYING → JOINING_CALL → IN_CALL → ENDED', async () => {
  const peers = peerUrls();
  const env = await baseEnv({
    BOOTSTRAP_API_KEY: 'e2e-bootstrap-key-0123456789',
    REDIS_URL: peers.redisUrl,
    MONGODB_URI: testDatabaseUri(peers.mongodbUri, uniqueName('meeboter_test_e2e')),
  });
  delete env.PLATFORM_PRIORITY; // the default
  const fleet = spawnFleetProcess('all', env);
  try {
    const base = env.PUBLIC_URL;
    await waitFor(async () => (await httpRequest(base, 'GET', '/readyz')).status === 200, 'the service to be ready');
    const auth = env.BOOTSTRAP_API_KEY;
    const created = await httpRequest(base, 'POST', '/api/bots', {
      auth,
      body: {
        meeting: { platform: 'google-meet', url: 'https://meet.google.com/abc-defg-hij' },
        metadata: { 'sim.durationMs': '1000' },
      },
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    const ended = await waitFor(async () => {
      const res = await httpRequest(base, 'GET', `/api/bots/${id}`, { auth });
      return res.body.status === 'ENDED' ? res.body : null;
    }, 'the bot to end');
    expect(ended).toMatchObject({ platform: 'local', endReason: 'COMPLETED' });
    const pid = pidOf(ended.platformIdentifier);
    expect(pid).toBeGreaterThan(0);
    await waitFor(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 'the bot process to be gone');
    const events = (await httpRequest(base, 'GET', `/api/bots/${id}/events`, { auth })).body.data;
    const statuses = events
      .filter((e: { type: string }) => e.type === 'status')
      .map((e: { status: string }) => e.status);
    expect(statuses).toEqual(['QUEUED', 'DEPLOYING', 'JOINING_CALL', 'IN_CALL', 'LEAVING', 'ENDED']);
  } finally {
    await fleet.kill('SIGTERM');
    await cleanup({ redisUrl: env.REDIS_URL, mongodbUri: env.MONGODB_URI }, env.REDIS_PREFIX);
  }
});

it('stops at startup with one line naming a bad variable', async () => {
  const env = await baseEnv({ PLATFORM_PRIORITY: 'local,k8s' });
  const fleet = spawnFleetProcess('all', env);
  const code = await new Promise((resolve) => fleet.child.once('exit', resolve));
  expect(code).toBe(1);
  expect(fleet.output().trim()).toBe('configuration error: K8S_BOT_LIMIT: is required');
});
