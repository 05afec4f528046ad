import http from 'node:http';
import { AddressInfo } from 'node:net';
import { webhookJobId } from '../queues/queue-names';
import { createDestinationCheck, Destination } from '../src/webhooks/destination';
import { postToAddresses } from '../workers/webhook-delivery';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/**
 * Where webhooks may go (README "Webhook destinations"): never to the fleet's own network unless the operator
 * allows it, checked at creation and again at delivery, redirects never followed. Every receiver here is a
 * real HTTP server on 127.0.0.1; no traffic goes anywhere else (public addresses are only checked).
 */
jest.setTimeout(120_000);

interface Receiver {
  url(host?: string): string;
  hits: Array<{ eventId: string; body: string }>;
  close(): Promise<void>;
}

async function startReceiver(
  answer: (res: http.ServerResponse) => void = (res) => res.writeHead(200).end(),
): Promise<Receiver> {
  const hits: Receiver['hits'] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      hits.push({ eventId: String(req.headers['x-meeboter-event-id']), body });
      answer(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (host = '127.0.0.1') => `http://${host}:${port}/hook`,
    hits,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const refusedWith = (destination: Destination) => (destination.allowed ? 'allowed' : destination.reason);

const webhookEvents = async (api: TestFleet, id: string) =>
  (await api.request('GET', `/api/bots/${id}/events`)).body.data.filter((e: { type: string }) =>
    e.type.startsWith('webhook.'),
  );

/**
 * The bot's webhook events once every status change (DEPLOYING, JOINING_CALL, IN_CALL, LEAVING, ENDED) was
 * given up, one `webhook.abandoned` each, in order. `onPoll` runs at every look.
 */
async function everyWebhookGivenUp(api: TestFleet, id: string, onPoll: () => Promise<void> = () => Promise.resolve()) {
  const abandoned = await waitFor(async () => {
    await onPoll();
    const events = await webhookEvents(api, id);
    return events.length === 5 && (await api.fleet.outbox.pending(id)) === 0 ? events : null;
  }, 'every webhook to be given up');
  expect(abandoned.map((e: { type: string }) => e.type)).toEqual(Array(5).fill('webhook.abandoned'));
  expect(abandoned.map((e: { data: { eventId: string } }) => e.data.eventId)).toEqual(
    [1, 2, 3, 4, 5].map((v) => expect.stringMatching(new RegExp(`^evt_${id}_${v}_\\d+$`))),
  );
  return abandoned as Array<{ reason: string }>;
}

describe('the destination rule', () => {
  const check = createDestinationCheck({ allowedHosts: [], allowedRanges: [] });

  it.each([
    ['http://127.0.0.1:6379/', '127.0.0.1 is a loopback address'],
    ['http://127.8.9.10/', 'a loopback address'],
    ['http://169.254.169.254/latest/meta-data/', '169.254.169.254 is a link-local address'],
    ['http://10.0.0.5/hook', 'a private address'],
    ['http://172.16.3.4/', 'a private address'],
    ['http://192.168.1.10/', 'a private address'],
    ['http://100.100.100.200/', 'a carrier-grade NAT address'],
    ['http://0.0.0.0:3000/', 'an unspecified address'],
    ['http://224.0.0.1/', 'a multicast address'],
    ['http://255.255.255.255/', 'a broadcast address'],
    ['http://240.0.0.1/', 'a reserved address'],
    // benchmarking (RFC 2544) and documentation ranges
    ['http://198.18.0.1/', '198.18.0.1 is a reserved address'],
    ['http://198.19.255.254/', 'a reserved address'],
    ['http://192.0.2.10/', 'a reserved address'],
    ['http://[::1]/', '::1 is a loopback address'],
    ['http://[::]/', 'an unspecified address'],
    ['http://[::ffff:127.0.0.1]/', 'a loopback address'],
    ['http://[::ffff:a9fe:a9fe]/', 'a link-local address'],
    ['http://[fe80::1]/', 'a link-local address'],
    ['http://[fd00::1]/', 'a private address'],
    ['http://[ff02::1]/', 'a multicast address'],
    ['http://[2001:db8::1]/', 'a reserved address'],
    // NAT64 (64:ff9b::/96) is judged by the IPv4 address the gateway reaches: on an IPv6-only cloud subnet
    // 64:ff9b::a9fe:a9fe is the metadata service
    ['http://[64:ff9b::a9fe:a9fe]/', '64:ff9b::a9fe:a9fe is a NAT64 address of 169.254.169.254, a link-local address'],
    ['http://[64:ff9b::7f00:1]/', 'a NAT64 address of 127.0.0.1, a loopback address'],
    ['http://[64:ff9b::a00:5]/', 'a NAT64 address of 10.0.0.5, a private address'],
    ['http://[64:ff9b:1::a9fe:a9fe]/', 'a NAT64 address outside 64:ff9b::/96'],
    // tunnelling forms, deprecated and refused whatever IPv4 address they carry
    ['http://[2002:a9fe:a9fe::1]/', 'a 6to4 tunnel address'],
    ['http://[2002:5db8:d70e::1]/', 'a 6to4 tunnel address'],
    ['http://[2001::1]/', 'a Teredo tunnel address'],
    ['http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/', 'a Teredo tunnel address'],
    ['http://[::ffff:0:7f00:1]/', 'an IPv4-translated address'],
    ['http://[fec0::1]/', 'a special-purpose address (deprecatedSiteLocal)'],
    // other spellings of 127.0.0.1, which URL parsing turns into the plain address
    ['http://2130706433/', '127.0.0.1 is a loopback address'],
    ['http://0x7f.1/', '127.0.0.1 is a loopback address'],
    ['http://localhost:3000/', 'localhost resolves to 127.0.0.1, a loopback address'],
    ['ftp://example.com/', 'must be an http:// or https:// URL'],
    ['file:///etc/passwd', 'must be an http:// or https:// URL'],
  ])('%s is refused: %s', async (url, reason) => {
    const destination = await check(url);
    expect(refusedWith(destination)).toContain(reason);
    expect(destination).toMatchObject({ allowed: false, unresolved: false });
  });

  it('calls a host that does not resolve unresolved, which a delivery may retry', async () => {
    expect(await check('http://no-such-host.invalid/hook')).toMatchObject({ allowed: false, unresolved: true });
  });

  it('allows public addresses as they are, with no DNS for a literal', async () => {
    expect(await check('https://93.184.215.14/hook')).toMatchObject({
      allowed: true,
      addresses: [{ address: '93.184.215.14', family: 4 }],
    });
    expect(await check('http://[2606:4700::1111]:8080/')).toMatchObject({
      allowed: true,
      addresses: [{ address: '2606:4700::1111', family: 6 }],
    });
    // a public IPv4 receiver reached through IPv4-mapped IPv6 or through the NAT64 gateway
    expect(await check('http://[::ffff:93.184.215.14]/')).toMatchObject({ allowed: true });
    expect(await check('http://[64:ff9b::5db8:d70e]/')).toMatchObject({
      allowed: true,
      addresses: [{ address: '64:ff9b::5db8:d70e', family: 6 }],
    });
  });

  it('opens exactly what the operator allows, by host name or by range', async () => {
    const byName = createDestinationCheck({ allowedHosts: ['LocalHost'], allowedRanges: [] });
    expect(await byName('http://localhost:8080/')).toMatchObject({
      allowed: true,
      addresses: [{ address: '127.0.0.1', family: 4 }],
    });
    expect(refusedWith(await byName('http://127.0.0.1:8080/'))).toContain('a loopback address');

    const byRange = createDestinationCheck({
      allowedHosts: [],
      allowedRanges: [
        { address: '127.0.0.1', prefix: 32, family: 'ipv4' },
        { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      ],
    });
    expect((await byRange('http://127.0.0.1:8080/')).allowed).toBe(true);
    expect((await byRange('http://localhost:8080/')).allowed).toBe(true);
    expect((await byRange('http://10.1.2.3/')).allowed).toBe(true);
    expect(refusedWith(await byRange('http://127.0.0.2/'))).toContain('a loopback address');
    expect(refusedWith(await byRange('http://192.168.1.1/'))).toContain('a private address');
    // a range covers the IPv4 address an embedding form reaches, and a range of the form itself
    expect((await byRange('http://[::ffff:10.9.8.7]/')).allowed).toBe(true);
    expect((await byRange('http://[64:ff9b::a09:807]/')).allowed).toBe(true);
    expect(refusedWith(await byRange('http://[64:ff9b::a9fe:a9fe]/'))).toContain('a link-local address');
    const byV6Range = createDestinationCheck({
      allowedHosts: [],
      allowedRanges: [{ address: '2002::', prefix: 16, family: 'ipv6' }],
    });
    expect((await byV6Range('http://[2002:a00:1::1]/')).allowed).toBe(true);
    expect(refusedWith(await byV6Range('http://[2001::1]/'))).toContain('a Teredo tunnel address');
  });
});

it('a delivery connects to the addresses that were checked, never to a new DNS answer', async () => {
  const receiver = await startReceiver();
  try {
    // `.invalid` never resolves: the request can only arrive through the checked address it was given
    const url = new URL(receiver.url('pinned.invalid'));
    const status = await postToAddresses(
      url,
      [{ address: '127.0.0.1', family: 4 }],
      { 'content-type': 'application/json' },
      '{"pinned":true}',
      10_000,
    );
    expect(status).toBe(200);
    expect(receiver.hits.map((hit) => hit.body)).toEqual(['{"pinned":true}']);
  } finally {
    await receiver.close();
  }
});

describe('at creation', () => {
  let t: TestFleet;
  beforeAll(async () => {
    t = await startTestFleet({ PLATFORM_PRIORITY: 'sim' }, { api: true, workers: false });
  });
  afterAll(() => t.close());

  it.each([
    ['loopback', 'http://127.0.0.1:6379/', 'is not an allowed webhook destination'],
    ['cloud metadata', 'http://169.254.169.254/latest/meta-data/', 'is not an allowed webhook destination'],
    ['private', 'http://192.168.1.10/hook', 'is not an allowed webhook destination'],
    ['name resolving to 127.0.0.1', 'http://localhost:8080/hook', 'is not an allowed webhook destination'],
    ['IPv4-mapped loopback', 'http://[::ffff:127.0.0.1]/hook', 'is not an allowed webhook destination'],
    [
      'NAT64 metadata address',
      'http://[64:ff9b::a9fe:a9fe]/latest/meta-data/',
      'is not an allowed webhook destination',
    ],
    ['6to4', 'http://[2002:a9fe:a9fe::1]/hook', 'is not an allowed webhook destination'],
  ])('callbackUrl (%s) %s is a 400 naming callbackUrl, and nothing is written', async (what, callbackUrl, reason) => {
    const owner = await t.fleet.apiKeys.create(`owner-ssrf-${what.replace(/\W+/g, '-')}`);
    const res = await t.request('POST', '/api/bots', { auth: owner, body: { meeting: meetings.zoom, callbackUrl } });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'VALIDATION_FAILED', details: [{ path: 'callbackUrl' }] });
    expect(res.body.error.message).toContain(`callbackUrl ${reason}`);
    expect((await t.request('GET', '/api/bots', { auth: owner })).body.data).toHaveLength(0);
  });
});

describe('a host name that does not resolve yet', () => {
  let t: TestFleet;
  beforeAll(async () => {
    // Short retries: every event is retried for 1.5 s after its status change, then given up with its reason.
    t = await startTestFleet({
      PLATFORM_PRIORITY: 'sim',
      WEBHOOK_RETRY_BASE_MS: '100',
      WEBHOOK_RETRY_MAX_AGE_MS: '1500',
    });
  });
  afterAll(() => t.close());

  it('is accepted at creation; its deliveries are retried, then given up with the reason in the bot events', async () => {
    // `.invalid` resolves nowhere (RFC 2606), so no request ever leaves the machine
    const created = await t.request('POST', '/api/bots', {
      body: {
        meeting: meetings.zoom,
        callbackUrl: 'http://hooks.not-yet-live.invalid/hook',
        metadata: { 'sim.durationMs': '200' },
      },
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    await waitFor(async () => (await t.request('GET', `/api/bots/${id}`)).body.status === 'ENDED', 'the bot to end');
    // each given up after failed tries
    let tries = 0;
    const abandoned = await everyWebhookGivenUp(t, id, async () => {
      tries = Math.max(tries, (await t.fleet.queues.webhooks.getJob(webhookJobId(id)))?.attemptsMade ?? 0);
    });
    expect(tries).toBeGreaterThanOrEqual(2);
    for (const event of abandoned) {
      expect(event.reason).toMatch(
        /^undelivered after 1500 ms; last try: callbackUrl host hooks\.not-yet-live\.invalid does not resolve \(\w+\)$/,
      );
    }
  });
});

describe('at delivery', () => {
  let t: TestFleet;
  beforeAll(async () => {
    // A development receiver on loopback, opened by name only: 127.0.0.1 itself stays closed.
    t = await startTestFleet({
      PLATFORM_PRIORITY: 'sim',
      WEBHOOK_ALLOWED_HOSTS: 'localhost',
      WEBHOOK_RETRY_BASE_MS: '100',
    });
  });
  afterAll(() => t.close());

  it('delivers to a loopback receiver when its host is explicitly allowed', async () => {
    const receiver = await startReceiver();
    try {
      const created = await t.request('POST', '/api/bots', {
        body: { meeting: meetings.zoom, callbackUrl: receiver.url('localhost'), metadata: { 'sim.durationMs': '200' } },
      });
      expect(created.status).toBe(201);
      await waitFor(
        () => receiver.hits.some((hit) => JSON.parse(hit.body).data.bot.status === 'ENDED'),
        'the ENDED webhook',
      );
      // the same receiver by address is not allowed
      const byAddress = await t.request('POST', '/api/bots', {
        body: { meeting: meetings.zoom, callbackUrl: receiver.url() },
      });
      expect(byAddress.status).toBe(400);
    } finally {
      await receiver.close();
    }
  });

  it('never follows a redirect: a 3xx is a failed delivery, retried, and the redirect target is never called', async () => {
    const target = await startReceiver();
    const redirecting = await startReceiver((res) => res.writeHead(302, { location: target.url() }).end());
    try {
      const created = await t.request('POST', '/api/bots', {
        body: {
          meeting: meetings.zoom,
          callbackUrl: redirecting.url('localhost'),
          metadata: { 'sim.durationMs': '200' },
        },
      });
      expect(created.status).toBe(201);
      await waitFor(() => redirecting.hits.length >= 3, 'three tries of the first event');
      const tried = [...new Set(redirecting.hits.map((hit) => hit.eventId))];
      expect(tried).toEqual([expect.stringMatching(new RegExp(`^evt_${created.body.id}_1_\\d+$`))]);
      expect(target.hits).toHaveLength(0);
      await t.request('DELETE', `/api/bots/${created.body.id}`);
    } finally {
      await Promise.all([redirecting.close(), target.close()]);
    }
  });
});

/**
 * The API process allows what the worker delivering does not, or the bot's callbackUrl changes after it was
 * created: as when a host's DNS answer changes. Both fleets share one Redis prefix and one database; the
 * worker starts only after `beforeWorker`, so every webhook it sends sees the state that left.
 */
async function splitFleets(apiEnv: Record<string, string>, beforeWorker: (api: TestFleet) => Promise<void>) {
  const api = await startTestFleet(
    { PLATFORM_PRIORITY: 'sim', WEBHOOK_RETRY_BASE_MS: '100', ...apiEnv },
    { api: true, workers: false },
  );
  await beforeWorker(api);
  const worker = await startTestFleet(
    {
      PLATFORM_PRIORITY: 'sim',
      WEBHOOK_RETRY_BASE_MS: '100',
      REDIS_PREFIX: api.env.REDIS_PREFIX,
      PUBLIC_URL: api.url,
      __DB: new URL(api.urls.mongodbUri).pathname.slice(1),
    },
    { api: false, workers: true },
  );
  return {
    api,
    close: async () => {
      await worker.close();
      await api.close();
    },
  };
}

describe('checked again at delivery', () => {
  it('a destination refused at delivery is abandoned at once, with the reason in the bot events', async () => {
    const receiver = await startReceiver();
    let id = '';
    const fleets = await splitFleets({ WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' }, async (api) => {
      const created = await api.request('POST', '/api/bots', {
        body: { meeting: meetings.zoom, callbackUrl: receiver.url(), metadata: { 'sim.durationMs': '200' } },
      });
      expect(created.status).toBe(201);
      id = created.body.id;
    });
    const { api } = fleets;
    try {
      await waitFor(
        async () => (await api.request('GET', `/api/bots/${id}`)).body.status === 'ENDED',
        'the bot to end',
      );
      // one abandonment per status change, none retried
      const abandoned = await everyWebhookGivenUp(api, id);
      for (const event of abandoned) {
        expect(event.reason).toBe(
          'callbackUrl is not an allowed webhook destination (127.0.0.1 is a loopback address)',
        );
      }
      const job = await api.fleet.queues.webhooks.getJob(webhookJobId(id));
      expect(job?.attemptsMade ?? 0).toBe(0);
      expect(receiver.hits).toHaveLength(0);
    } finally {
      await fleets.close();
      await receiver.close();
    }
  });

  it('a host that no longer resolves is a failed delivery, retried, not abandoned', async () => {
    let id = '';
    const fleets = await splitFleets({}, async (api) => {
      const created = await api.request('POST', '/api/bots', {
        body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '200' } },
      });
      id = created.body.id;
      await api.fleet.repo.update(id, { callbackUrl: 'http://no-such-host.invalid/hook' });
    });
    const { api } = fleets;
    try {
      await waitFor(async () => {
        const job = await api.fleet.queues.webhooks.getJob(webhookJobId(id));
        return (job?.attemptsMade ?? 0) >= 2;
      }, 'the delivery to be retried');
      expect(await webhookEvents(api, id)).toEqual([]);
      expect(await api.fleet.outbox.pending(id)).toBeGreaterThan(0);
    } finally {
      await fleets.close();
    }
  });
});
