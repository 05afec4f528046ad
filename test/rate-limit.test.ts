import { botToken } from '../src/auth/bot-token';
import { httpRequest, meetings, startTestFleet, TestFleet, uniqueName } from './support/fleet';

/** Client requests per API key, counted in Redis across API processes; bot routes are never limited. */
let first: TestFleet;
let second: TestFleet;
beforeAll(async () => {
  const shared = {
    API_RATE_LIMIT_PER_MINUTE: '6',
    REDIS_PREFIX: uniqueName('mbtest'),
    __DB: uniqueName('meeboter_test_rate'),
  };
  first = await startTestFleet(shared, { api: true, workers: false });
  second = await startTestFleet(shared, { api: true, workers: false });
});
afterAll(async () => {
  await second.fleet.shutdown.close();
  await first.close();
});

it('answers 429 with Retry-After past the limit of one key, counted across two API processes', async () => {
  const key = first.apiKey;
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++)
    statuses.push((await httpRequest(i % 2 ? second.url : first.url, 'GET', '/api/bots', { auth: key })).status);
  expect(statuses).toEqual(Array(6).fill(200));
  const refused = await fetch(`${second.url}/api/bots`, { headers: { authorization: `Bearer ${key}` } });
  expect(refused.status).toBe(429);
  expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('RATE_LIMITED');

  // another key has its own allowance; a bot's own routes are never limited
  const other = await first.fleet.apiKeys.create('rate-other');
  expect((await httpRequest(first.url, 'GET', '/api/bots', { auth: other })).status).toBe(200);
  const created = await httpRequest(first.url, 'POST', '/api/bots', { auth: other, body: { meeting: meetings.zoom } });
  const token = botToken(first.env.BOT_TOKEN_SECRET, created.body.id);
  for (let i = 0; i < 10; i++) {
    expect(
      (await httpRequest(first.url, 'POST', `/api/bots/${created.body.id}/heartbeat`, { auth: token })).status,
    ).toBe(200);
  }
});
