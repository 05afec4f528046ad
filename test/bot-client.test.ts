import http from 'node:http';
import { AddressInfo } from 'node:net';
import { BotApiError, BotClient, startHeartbeats } from '../src/sdk/bot-client';
import { sleep, waitFor } from './support/fleet';
import { collectGarbage } from './support/gc';

/**
 * The bot SDK against a fleet that takes requests and never answers: each request is given up after its
 * timeout, also when a garbage collection ran while it waited, and the caller's signal still cancels it.
 * Then against one that answers: what a call sends, which answers it retries and which it gives up on.
 */
let server: http.Server;
let baseUrl: string;
const held: http.ServerResponse[] = [];
beforeAll(async () => {
  server = http.createServer((_request, response) => void held.push(response));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  held.forEach((response) => response.destroy());
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const client = (signal?: AbortSignal) =>
  new BotClient({ baseUrl, botId: 'b1', token: 't', retryForMs: 0, requestTimeoutMs: 300, signal });

it.each([
  ['without a signal of its own', undefined],
  ['with a signal of its own', new AbortController().signal],
])(
  'a request the fleet never answers is given up after its timeout, across a garbage collection (%s)',
  async (_case, signal) => {
    const beat = client(signal)
      .heartbeat()
      .then(
        () => 'answered',
        (error: unknown) => error,
      );
    await sleep(50);
    collectGarbage();
    const outcome = await Promise.race([beat, sleep(5000).then(() => 'still waiting after 5 s')]);
    expect(outcome).toBeInstanceOf(BotApiError);
    expect(outcome).toMatchObject({
      status: 0,
      message: expect.stringMatching(/^POST heartbeat: 0 .*no answer in 300 ms/),
    });
  },
);

it("the caller's signal cancels a request at once", async () => {
  const caller = new AbortController();
  const beat = new BotClient({
    baseUrl,
    botId: 'b1',
    token: 't',
    retryForMs: 60_000,
    requestTimeoutMs: 60_000,
    signal: caller.signal,
  }).heartbeat();
  await sleep(50);
  caller.abort(new Error('shutting down'));
  await expect(Promise.race([beat, sleep(5000).then(() => 'still waiting after 5 s')])).rejects.toThrow(
    'shutting down',
  );
});

describe('answers', () => {
  /** A fleet that answers each request with the next of `answers` (status, body), recording what it was sent. */
  let answering: http.Server;
  let answeringUrl: string;
  let answers: Array<[number, string]> = [];
  const received: Array<{ method: string; url: string; authorization?: string; body: string }> = [];
  beforeAll(async () => {
    answering = http.createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => (body += chunk));
      request.on('end', () => {
        received.push({
          method: request.method!,
          url: request.url!,
          authorization: request.headers.authorization,
          body,
        });
        const [status, text] = answers.shift() ?? [500, 'no answer scripted'];
        response.writeHead(status, { 'content-type': 'application/json' }).end(text);
      });
    });
    await new Promise<void>((resolve) => answering.listen(0, '127.0.0.1', resolve));
    answeringUrl = `http://127.0.0.1:${(answering.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    answering.closeAllConnections();
    await new Promise((resolve) => answering.close(resolve));
  });
  beforeEach(() => {
    received.length = 0;
  });
  const bot = () =>
    new BotClient({ baseUrl: `${answeringUrl}/`, botId: 'b1', token: 'secret-token', retryForMs: 10_000 });

  it('sends the call with its token and body, and reads a 2xx answer (an empty one as {})', async () => {
    answers = [
      [200, '{"shouldLeave":true}'],
      [200, ''],
    ];
    await expect(bot().heartbeat()).resolves.toEqual({ shouldLeave: true });
    await expect(bot().reportStatus('IN_CALL')).resolves.toEqual({});
    expect(received).toEqual([
      { method: 'POST', url: '/api/bots/b1/heartbeat', authorization: 'Bearer secret-token', body: '{}' },
      {
        method: 'POST',
        url: '/api/bots/b1/status',
        authorization: 'Bearer secret-token',
        body: '{"status":"IN_CALL"}',
      },
    ]);
  });

  it('retries a 503 and a 429, then takes the answer', async () => {
    answers = [
      [503, 'restarting'],
      [429, 'slow down'],
      [200, '{"id":"b1"}'],
    ];
    await expect(bot().getConfig()).resolves.toEqual({ id: 'b1' });
    expect(received.map((r) => r.method + ' ' + r.url)).toEqual(Array(3).fill('GET /api/bots/b1/config'));
  });

  it('gives up at once on an answer that will not change (410), with its status and text', async () => {
    answers = [
      [410, '{"error":"bot ended"}'],
      [200, '{}'],
    ];
    const outcome = await bot()
      .reportStatus('LEAVING')
      .catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(BotApiError);
    expect(outcome).toMatchObject({ status: 410, message: 'POST status: 410 {"error":"bot ended"}' });
    expect(received).toHaveLength(1);
  });
});

describe('heartbeats', () => {
  it('after a failed heartbeat the next comes well before the interval, and then the interval again', async () => {
    const calls: number[] = [];
    let failuresLeft = 3;
    const fleet = {
      heartbeat: () => {
        calls.push(Date.now());
        return failuresLeft-- > 0 ? Promise.reject(new Error('503')) : Promise.resolve({ shouldLeave: false });
      },
    };
    // an interval no test waits for: every beat after the first is a retry, until one succeeds
    const beating = startHeartbeats(fleet, 3600_000, () => undefined);
    try {
      await waitFor(() => calls.length === 4, 'three retries after failed heartbeats', 20_000);
      await sleep(1000);
      expect(calls).toHaveLength(4); // succeeded: the next waits the interval
    } finally {
      beating.stop();
    }
  });

  it('tells the bot to leave once', async () => {
    const left: number[] = [];
    let beats = 0;
    const fleet = { heartbeat: () => (beats++, Promise.resolve({ shouldLeave: true })) };
    const beating = startHeartbeats(fleet, 10, () => left.push(beats));
    try {
      await waitFor(() => beats >= 3, 'three heartbeats');
      expect(left).toEqual([1]);
    } finally {
      beating.stop();
    }
  });
});
