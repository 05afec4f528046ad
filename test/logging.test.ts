import { createLogger } from '../src/logger';
import { meetings, startTestFleet, TestFleet } from './support/fleet';

/** pino JSON lines: request ids in answers and logs, credentials redacted, stacks kept for errors. */
const lines: string[] = [];
let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'sim' },
    { api: true, workers: false },
    { log: (line) => lines.push(line) },
  );
});
afterAll(() => t.close());

it('gives every request an id, answered in X-Request-Id and in error bodies, and logged with it', async () => {
  const refused = await fetch(`${t.url}/api/bots/nope`, {
    headers: { authorization: `Bearer ${t.apiKey}`, 'x-request-id': 'client-chosen-42' },
  });
  expect(refused.headers.get('x-request-id')).toBe('client-chosen-42');
  expect(((await refused.json()) as { error: { requestId: string } }).error.requestId).toBe('client-chosen-42');

  const odd = await fetch(`${t.url}/api/bots`, {
    headers: { authorization: `Bearer ${t.apiKey}`, 'x-request-id': 'no spaces allowed' },
  });
  expect(odd.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);

  const created = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  expect(created.status).toBe(201);
  const requestLog = lines.map((line) => JSON.parse(line)).find((entry) => entry.req?.id === 'client-chosen-42');
  expect(requestLog).toMatchObject({
    level: 'debug',
    req: { method: 'GET', headers: { authorization: '[redacted]' } },
  });
  expect(lines.join('\n')).not.toContain(t.apiKey);
});

it('writes one JSON object per line with the level as a word, masks secret-looking keys and keeps error stacks', () => {
  const out: string[] = [];
  const log = createLogger({ level: 'info', write: (line) => out.push(line) }).child({ botId: 'b1' });
  log.debug('not written at info');
  log.warn('boom', { error: new Error('kaput'), apiKey: 'mbk_secret', token: 'mbt_secret', platform: 'sim' });
  expect(out).toHaveLength(1);
  const entry = JSON.parse(out[0]);
  expect(entry).toMatchObject({
    level: 'warn',
    msg: 'boom',
    botId: 'b1',
    platform: 'sim',
    apiKey: '[redacted]',
    token: '[redacted]',
  });
  expect(Date.parse(entry.time)).not.toBeNaN();
  expect(entry.error.stack).toContain('kaput');
});
