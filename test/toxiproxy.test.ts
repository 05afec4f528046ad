import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PeerFault } from '../reliability/chaos/platform-peer';
import { startToxiproxy, ToxiproxyPaths } from '../reliability/chaos/toxiproxy';
import { startRedis, StartedPeer } from '../src/peers';

/**
 * The chaos run's network paths through a real toxiproxy-server in front of a real redis-server: traffic
 * passes, each fault visibly breaks it the way it should, and its end gives a working path back.
 */
jest.setTimeout(60_000);

const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-toxiproxy-'));
let redis: StartedPeer;
let paths: ToxiproxyPaths;
let address: string;

const LATENCY_MS = 800;
const JITTER_MS = 100;
const TIMEOUT_MS = 1000;
const RATE_KBPS = 16;

beforeAll(async () => {
  redis = await startRedis(path.join(dir, 'redis'));
  paths = await startToxiproxy(path.join(dir, 'toxiproxy'), {
    latencyMs: LATENCY_MS,
    jitterMs: JITTER_MS,
    timeoutMs: TIMEOUT_MS,
    bandwidthKbps: RATE_KBPS,
  });
  address = await paths.open('redis', new URL(redis.url).host);
});

afterAll(async () => {
  await paths?.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** What one connection to `address` saw after sending `command`: the answer, or how it failed. */
interface Exchange {
  answer: string;
  error?: string;
  /** Closed by the other side (or errored) before the expected answer was complete. */
  ended: boolean;
  elapsedMs: number;
}

/** Sends a redis command; resolves once `complete(answer)` or when the connection ended or failed. */
function exchange(command: string, complete: (answer: string) => boolean = (a) => a.endsWith('\r\n')) {
  const [host, port] = address.split(':');
  const started = Date.now();
  return new Promise<Exchange>((resolve) => {
    let answer = '';
    const socket = net.connect({ host, port: Number(port) });
    const done = (ended: boolean, error?: string) => {
      socket.destroy();
      resolve({ answer, error, ended, elapsedMs: Date.now() - started });
    };
    socket.on('connect', () => socket.write(command));
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      if (complete(answer)) done(false);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => done(true, error.code ?? error.message));
    socket.on('end', () => done(true));
    // a bound, so a path that hangs fails the test rather than its timeout
    socket.setTimeout(20_000, () => done(true, 'no answer within 20 s'));
  });
}

const ping = () => exchange('PING\r\n');
const faultOf = (kind: string): PeerFault => paths.faultsOf('redis').find((fault) => fault.kind === `redis:${kind}`)!;

/** Runs `during` inside the fault, then checks the path works again after its end. */
async function whileFaulty(kind: string, during: () => Promise<void>) {
  const end = await faultOf(kind).begin();
  try {
    await during();
  } finally {
    await end();
  }
  expect(await ping()).toMatchObject({ answer: '+PONG\r\n', ended: false });
}

test('a path carries the traffic to its upstream', async () => {
  expect(address).not.toBe(new URL(redis.url).host);
  expect(await ping()).toMatchObject({ answer: '+PONG\r\n', ended: false });
  expect(paths.faultsOf('redis').map((fault) => fault.kind)).toEqual([
    'redis:latency',
    'redis:timeout',
    'redis:reset',
    'redis:bandwidth',
    'redis:down',
  ]);
});

test('down: connections are refused until it ends', async () => {
  await whileFaulty('down', async () => {
    expect(await ping()).toMatchObject({ answer: '', ended: true, error: 'ECONNREFUSED' });
  });
});

test('reset: connections are reset by the peer until it ends', async () => {
  await whileFaulty('reset', async () => {
    expect(await ping()).toMatchObject({ answer: '', ended: true, error: 'ECONNRESET' });
  });
});

test('timeout: no answer comes, and the connection is closed after the timeout', async () => {
  await whileFaulty('timeout', async () => {
    const seen = await ping();
    expect(seen).toMatchObject({ answer: '', ended: true });
    // closed by the toxic, not before it (a lower bound: the toxic never closes early)
    expect(seen.elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
  });
});

test('latency: every answer comes at least latency − jitter late', async () => {
  await whileFaulty('latency', async () => {
    const seen = await ping();
    expect(seen).toMatchObject({ answer: '+PONG\r\n', ended: false });
    expect(seen.elapsedMs).toBeGreaterThanOrEqual(LATENCY_MS - JITTER_MS);
  });
});

test('bandwidth: a large answer flows no faster than the rate', async () => {
  const value = 'x'.repeat(64_000);
  expect(await exchange(`*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$${value.length}\r\n${value}\r\n`)).toMatchObject({
    answer: '+OK\r\n',
  });
  const whole = (answer: string) => answer.length >= `$64000\r\n${value}\r\n`.length;
  await whileFaulty('bandwidth', async () => {
    const seen = await exchange('GET big\r\n', whole);
    expect(seen).toMatchObject({ answer: `$64000\r\n${value}\r\n`, ended: false });
    // 64,000 bytes at 16 KB/s take 4 s at least (a lower bound: the toxic never sends faster)
    expect(seen.elapsedMs).toBeGreaterThanOrEqual(3500);
  });
});

test('overlapping faults each remove only their own toxic', async () => {
  const endLatency = await faultOf('latency').begin();
  const endReset = await faultOf('reset').begin();
  await endReset();
  const slow = await ping();
  expect(slow).toMatchObject({ answer: '+PONG\r\n', ended: false });
  expect(slow.elapsedMs).toBeGreaterThanOrEqual(LATENCY_MS - JITTER_MS);
  await endLatency();
  expect(await ping()).toMatchObject({ answer: '+PONG\r\n', ended: false });
});

test('without the binary, starting fails and says how to build it', async () => {
  const before = process.env.MEEBOTER_TOXIPROXY_BIN;
  process.env.MEEBOTER_TOXIPROXY_BIN = path.join(dir, 'nowhere');
  try {
    await expect(startToxiproxy(path.join(dir, 'none'))).rejects.toThrow(/run `bash scripts\/provision.sh --test`/);
  } finally {
    if (before === undefined) delete process.env.MEEBOTER_TOXIPROXY_BIN;
    else process.env.MEEBOTER_TOXIPROXY_BIN = before;
  }
});
