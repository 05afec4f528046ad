import http from 'node:http';
import { AddressInfo } from 'node:net';
import { BotApiError, BotClient } from '../src/sdk/bot-client';
import { sleep } from './support/fleet';
import { collectGarbage } from './support/gc';

/**
 * The bot SDK against a fleet that takes requests and never answers: each request is given up after its
 * timeout, also when a garbage collection ran while it waited, and the caller's signal still cancels it.
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

const client = (signal?: AbortSignal) => new BotClient({ baseUrl, botId: 'b1', token: 't', retryForMs: 0, requestTimeoutMs: 300, signal });

it.each([
  ['without a signal of its own', undefined],
  ['with a signal of its own', new AbortController().signal],
])('a request the fleet never answers is given up after its timeout, across a garbage collection (%s)', async (_case, signal) => {
  const beat = client(signal).heartbeat().then(
    () => 'answered',
    (error: unknown) => error,
  );
  await sleep(50);
  collectGarbage();
  const outcome = await Promise.race([beat, sleep(5000).then(() => 'still waiting after 5 s')]);
  expect(outcome).toBeInstanceOf(BotApiError);
  expect(outcome).toMatchObject({ status: 0, message: expect.stringMatching(/^POST heartbeat: 0 .*no answer in 300 ms/) });
});

it("the caller's signal cancels a request at once", async () => {
  const caller = new AbortController();
  const beat = new BotClient({ baseUrl, botId: 'b1', token: 't', retryForMs: 60_000, requestTimeoutMs: 60_000, signal: caller.signal }).heartbeat();
  await sleep(50);
  caller.abort(new Error('shutting down'));
  await expect(Promise.race([beat, sleep(5000).then(() => 'still waiting after 5 s')])).rejects.toThrow('shutting down');
});
