import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { botToken } from '../src/auth/bot-token';
import {
  SCREENSHOT_MAX_BYTES,
  SCREENSHOT_STATE_MAX_CHARS,
  SCREENSHOT_TRIGGER_MAX_CHARS,
  screenshotMetadata,
} from '../src/recordings/screenshots';
import { ApiAnswer, botOf, createBot, startTestFleet, TestFleet } from './support/fleet';
import { fleetS3Env, Moto, motoS3Client, startMoto } from './support/moto';

/**
 * Screenshots: a bot uploads them as Meeboter's images do (multipart/form-data, `X-Milo-Token`), the fleet
 * keeps them in moto's S3 under the bot's prefix, and its owner lists them with links that serve the bytes.
 */
jest.setTimeout(180_000);

let moto: Moto;
let s3: S3Client;
let t: TestFleet;
const BUCKET = 'meeboter-screenshots';

beforeAll(async () => {
  moto = await startMoto();
  s3 = motoS3Client(moto.url);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'sim', ...fleetS3Env(moto.url, BUCKET) },
    { api: true, workers: false },
  );
});
afterAll(async () => {
  await t?.close();
  s3?.destroy();
  await moto?.stop();
});

/** A real 1×1 PNG. */
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);
const PNG_SIGNATURE = PNG.subarray(0, 8);
/** Bytes that pass for a PNG (they start with its signature), of any size. */
const pngOfSize = (size: number) => Buffer.concat([PNG_SIGNATURE, randomBytes(size - PNG_SIGNATURE.length)]);

type Part = [name: string, value: string | Buffer, filename?: string];

/** A multipart request exactly as upstream's UploadScreenshotUseCase builds it (fetch + FormData, X-Milo-Token). */
async function upload(base: string, botId: string, token: string | null, parts: Part[]): Promise<ApiAnswer> {
  const form = new FormData();
  for (const [name, value, filename] of parts) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([new Uint8Array(value)]), filename ?? 'screenshot.png');
  }
  const response = await fetch(`${base}/api/bots/${botId}/screenshots`, {
    method: 'POST',
    headers: token ? { 'X-Milo-Token': token } : {},
    body: form,
  });
  return { status: response.status, body: await response.json() };
}

const imageParts = (
  file: Buffer,
  fields: Record<string, string> = { type: 'state_change', state: 'IN_CALL' },
): Part[] => [['file', file], ...Object.entries(fields)];

const tokenOf = (id: string) => botToken(t.env.BOT_TOKEN_SECRET, id);

/** Every object the bucket holds under the bot's prefix. */
async function storedKeys(botId: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `bots/${botId}/` }));
  return (listed.Contents ?? []).map((object) => object.Key!);
}

it('takes an upload as the images send it, by the bot number their BOT_ID holds and the token that names it, and lists it by either', async () => {
  const { id, number } = (await botOf(t, await createBot(t))) as { id: string; number: number };
  // the token every platform gives a container (MILO_AUTH_TOKEN) names the bot's id and number
  const answer = await upload(t.url, String(number), botToken(t.env.BOT_TOKEN_SECRET, id, number), imageParts(PNG));
  expect(answer.status).toBe(201);
  expect(await storedKeys(id)).toEqual([answer.body.key]);
  for (const ref of [id, String(number)]) {
    const listed = await t.request('GET', `/api/bots/${ref}/screenshots`);
    expect(listed.body.data.map((shot: { key: string }) => shot.key)).toEqual([answer.body.key]);
  }
  // another bot's number with this token: refused, nothing kept
  const other = (await botOf(t, await createBot(t))) as { id: string; number: number };
  const refused = await upload(
    t.url,
    String(other.number),
    botToken(t.env.BOT_TOKEN_SECRET, id, number),
    imageParts(PNG),
  );
  expect(refused.status).toBe(401);
  expect(await storedKeys(other.id)).toEqual([]);
});

it('keeps an upload in S3 under the bot prefix, answers 201 as upstream does, and lists it with a link serving the same bytes', async () => {
  const id = await createBot(t);
  const before = Date.now();
  const answer = await upload(
    t.url,
    id,
    tokenOf(id),
    imageParts(PNG, { type: 'state_change', state: 'IN_WAITING_ROOM', trigger: 'knocked' }),
  );
  expect(answer.status).toBe(201);
  expect(Object.keys(answer.body).sort()).toEqual(['capturedAt', 'key', 'state', 'trigger', 'type']);
  expect(answer.body).toMatchObject({ type: 'state_change', state: 'IN_WAITING_ROOM', trigger: 'knocked' });
  expect(answer.body.key).toMatch(new RegExp(`^bots/${id}/screenshots/\\d{13}-[0-9a-f-]{36}\\.png$`));
  expect(Date.parse(answer.body.capturedAt)).toBeGreaterThanOrEqual(before - 1000);

  // really in moto's S3, as a PNG
  expect(await storedKeys(id)).toEqual([answer.body.key]);
  const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: answer.body.key }));
  expect(head.ContentType).toBe('image/png');
  const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: answer.body.key }));
  expect(Buffer.from(await object.Body!.transformToByteArray()).equals(PNG)).toBe(true);

  // no trigger: none in the answer (upstream's shape) nor in the list
  const plain = await upload(t.url, id, tokenOf(id), imageParts(PNG, { type: 'manual', state: 'IN_CALL' }));
  expect(plain.status).toBe(201);
  expect(Object.keys(plain.body).sort()).toEqual(['capturedAt', 'key', 'state', 'type']);

  const listed = await t.request('GET', `/api/bots/${id}/screenshots`);
  expect(listed.status).toBe(200);
  expect(listed.body.nextCursor).toBeNull();
  // without url and expiresAt (toEqual skips undefined properties)
  expect(listed.body.data.map((shot: object) => ({ ...shot, url: undefined, expiresAt: undefined }))).toEqual([
    answer.body,
    plain.body,
  ]);
  for (const shot of listed.body.data) {
    expect(new URL(shot.url).searchParams.get('X-Amz-Expires')).toBe('900');
    expect(Date.parse(shot.expiresAt)).toBeGreaterThan(Date.now());
    const download = await fetch(shot.url);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).equals(PNG)).toBe(true);
  }
});

it('lists oldest first in pages, and serves larger images byte for byte', async () => {
  const id = await createBot(t);
  const images = [pngOfSize(300_000), pngOfSize(1_000), pngOfSize(2_000_000)];
  const keys: string[] = [];
  for (const [i, image] of images.entries()) {
    const answer = await upload(t.url, id, tokenOf(id), imageParts(image, { type: 'error', state: `STEP_${i}` }));
    expect(answer.status).toBe(201);
    keys.push(answer.body.key);
  }
  const first = await t.request('GET', `/api/bots/${id}/screenshots?limit=2`);
  expect(first.status).toBe(200);
  expect(first.body.data.map((shot: { state: string }) => shot.state)).toEqual(['STEP_0', 'STEP_1']);
  expect(first.body.nextCursor).toBe(keys[1].split('/').at(-1));
  const second = await t.request('GET', `/api/bots/${id}/screenshots?limit=2&cursor=${first.body.nextCursor}`);
  expect(second.body.data.map((shot: { state: string }) => shot.state)).toEqual(['STEP_2']);
  expect(second.body.nextCursor).toBeNull();
  const all = [...first.body.data, ...second.body.data];
  expect(all.map((shot) => shot.key)).toEqual(keys);
  for (const [i, shot] of all.entries()) {
    expect(Buffer.from(await (await fetch(shot.url)).arrayBuffer()).equals(images[i])).toBe(true);
  }
  expect((await t.request('GET', `/api/bots/${id}/screenshots?limit=0`)).body.error.details[0].path).toBe('limit');
  expect((await t.request('GET', `/api/bots/${id}/screenshots?cursor=../../other`)).body.error.details[0].path).toBe(
    'cursor',
  );
});

it('keeps the longest state and trigger it accepts, in any script, within S3 2 KB of user metadata', async () => {
  // three-byte characters are the worst case for base64 of UTF-8 (astral ones take two UTF-16 units for four bytes)
  const state = '€'.repeat(SCREENSHOT_STATE_MAX_CHARS);
  const trigger = '€'.repeat(SCREENSHOT_TRIGGER_MAX_CHARS);
  const metadata = screenshotMetadata({
    key: 'k',
    capturedAt: new Date().toISOString(),
    type: 'state_change',
    state,
    trigger,
  });
  const bytes = Object.entries(metadata).reduce(
    (sum, [key, value]) => sum + Buffer.byteLength(key) + Buffer.byteLength(value),
    0,
  );
  expect(bytes).toBeLessThanOrEqual(2048);

  const id = await createBot(t);
  const answer = await upload(t.url, id, tokenOf(id), imageParts(PNG, { type: 'fatal', state, trigger }));
  expect([answer.status, answer.body.trigger]).toEqual([201, trigger]);
  const [listed] = (await t.request('GET', `/api/bots/${id}/screenshots`)).body.data;
  expect([listed.state, listed.trigger]).toEqual([state, trigger]);
});

it('takes only the bot its own token: another bot token, an API key or none is a 401; another owner gets a 404', async () => {
  const [id, other] = [await createBot(t), await createBot(t)];
  expect((await upload(t.url, id, tokenOf(other), imageParts(PNG))).status).toBe(401);
  expect((await upload(t.url, id, t.apiKey, imageParts(PNG))).status).toBe(401);
  expect((await upload(t.url, id, null, imageParts(PNG))).status).toBe(401);
  expect((await upload(t.url, id, `${tokenOf(id)}x`, imageParts(PNG))).status).toBe(401);
  expect(await storedKeys(id)).toEqual([]);

  expect((await upload(t.url, id, tokenOf(id), imageParts(PNG))).status).toBe(201);
  const stranger = await t.fleet.apiKeys.create('screenshots-other-owner');
  expect((await t.request('GET', `/api/bots/${id}/screenshots`, { auth: stranger })).status).toBe(404);
  // the bot token does not list
  expect((await t.request('GET', `/api/bots/${id}/screenshots`, { auth: tokenOf(id) })).status).toBe(401);
});

describe('refuses a bad upload naming its field, and keeps nothing', () => {
  const cases: Array<[string, Part[], number, string]> = [
    ['an unknown type', imageParts(PNG, { type: 'selfie', state: 'IN_CALL' }), 400, 'type'],
    ['no type', imageParts(PNG, { state: 'IN_CALL' }), 400, 'type'],
    ['no state', imageParts(PNG, { type: 'manual' }), 400, 'state'],
    ['an empty state', imageParts(PNG, { type: 'manual', state: '' }), 400, 'state'],
    [
      'a state too long',
      imageParts(PNG, { type: 'manual', state: 'S'.repeat(SCREENSHOT_STATE_MAX_CHARS + 1) }),
      400,
      'state',
    ],
    ['an empty trigger', imageParts(PNG, { type: 'manual', state: 'IN_CALL', trigger: '' }), 400, 'trigger'],
    [
      'a trigger too long',
      imageParts(PNG, { type: 'manual', state: 'IN_CALL', trigger: 't'.repeat(SCREENSHOT_TRIGGER_MAX_CHARS + 1) }),
      400,
      'trigger',
    ],
    [
      'a field of 5000 bytes',
      imageParts(PNG, { type: 'manual', state: 'IN_CALL', trigger: 't'.repeat(5000) }),
      400,
      'trigger',
    ],
    [
      'an unknown field',
      imageParts(PNG, { type: 'manual', state: 'IN_CALL', trigger: 'x', colour: 'red' }),
      400,
      'colour',
    ],
    [
      'twenty unknown fields',
      imageParts(PNG, {
        type: 'manual',
        state: 'IN_CALL',
        ...Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`extra${i}`, 'x'])),
      }),
      400,
      'extra0',
    ],
    ['a field given twice', [...imageParts(PNG), ['type', 'error']], 400, 'type'],
    [
      'no file',
      [
        ['type', 'manual'],
        ['state', 'IN_CALL'],
      ],
      400,
      'file',
    ],
    [
      'the file as text',
      [
        ['file', 'not an image'],
        ['type', 'manual'],
        ['state', 'IN_CALL'],
      ],
      400,
      'file',
    ],
    ['a JPEG', imageParts(Buffer.from('ffd8ffe000104a46494600010100000100010000ffd9', 'hex')), 400, 'file'],
    ['an empty file', imageParts(Buffer.alloc(0)), 400, 'file'],
    [
      'two files',
      [
        ['file', PNG],
        ['file', PNG],
        ['type', 'manual'],
        ['state', 'IN_CALL'],
      ],
      400,
      'file',
    ],
    [
      'the file under another name',
      [
        ['image', PNG],
        ['type', 'manual'],
        ['state', 'IN_CALL'],
      ],
      400,
      'image',
    ],
    ['a file one byte over the limit', imageParts(pngOfSize(SCREENSHOT_MAX_BYTES + 1)), 413, 'file'],
  ];
  it.each(cases)('%s', async (_what, parts, status, field) => {
    const id = await createBot(t);
    const answer = await upload(t.url, id, tokenOf(id), parts);
    expect([answer.status, answer.body.error?.details?.[0]?.path]).toEqual([status, field]);
    expect(answer.body.error.message).toMatch(new RegExp(`^${field} `));
    expect(await storedKeys(id)).toEqual([]);
  });

  it('a file of exactly the limit is kept', async () => {
    const id = await createBot(t);
    const answer = await upload(t.url, id, tokenOf(id), imageParts(pngOfSize(SCREENSHOT_MAX_BYTES)));
    expect(answer.status).toBe(201);
    expect(await storedKeys(id)).toEqual([answer.body.key]);
  });

  it('a body that is not multipart is a 415, a broken one a 400', async () => {
    const id = await createBot(t);
    const json = await t.request('POST', `/api/bots/${id}/screenshots`, {
      auth: tokenOf(id),
      body: { type: 'manual', state: 'IN_CALL' },
    });
    expect([json.status, json.body.error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const broken = await t.request('POST', `/api/bots/${id}/screenshots`, {
      auth: tokenOf(id),
      headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
      rawBody: '--xyz\r\nContent-Disposition: form-data; name="type"\r\n\r\nmanual\r\n--xy',
    });
    expect([broken.status, broken.body.error.code]).toEqual([400, 'VALIDATION_FAILED']);
    expect(await storedKeys(id)).toEqual([]);
  });
});

it('answers an ended bot 410 (before reading the body), as the other bot routes do; its owner still lists what it kept', async () => {
  const id = await createBot(t);
  const kept = await upload(t.url, id, tokenOf(id), imageParts(PNG));
  expect(kept.status).toBe(201);
  expect((await t.request('DELETE', `/api/bots/${id}`)).body.status).toBe('ENDED');
  const answer = await upload(t.url, id, tokenOf(id), imageParts(PNG));
  expect([answer.status, answer.body.error.code]).toEqual([410, 'GONE']);
  expect((await upload(t.url, id, tokenOf(id), imageParts(Buffer.from('not a png')))).status).toBe(410);
  expect((await t.request('POST', `/api/bots/${id}/heartbeat`, { auth: tokenOf(id) })).status).toBe(410);
  expect(await storedKeys(id)).toEqual([kept.body.key]);
  const listed = (await t.request('GET', `/api/bots/${id}/screenshots`)).body;
  expect(listed.data.map((shot: { key: string }) => shot.key)).toEqual([kept.body.key]);
});

it('tells a PNG by its signature, whatever the filename and the part type', async () => {
  const id = await createBot(t);
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(PNG)], { type: 'image/png' }), 'shot-at-dawn.bin');
  form.append('type', 'error');
  form.append('state', 'JOINING_CALL');
  const typed = await fetch(`${t.url}/api/bots/${id}/screenshots`, {
    method: 'POST',
    headers: { 'X-Milo-Token': tokenOf(id) },
    body: form,
  });
  expect(typed.status).toBe(201);
  // the images' own Blob has no type: it goes as application/octet-stream
  expect(
    (
      await upload(t.url, id, tokenOf(id), [
        ['file', PNG, 'screenshot.png'],
        ['type', 'error'],
        ['state', 'JOINING_CALL'],
      ])
    ).status,
  ).toBe(201);
  expect((await storedKeys(id)).length).toBe(2);
});

it('without S3_BUCKET_NAME: the upload is a 503 naming the setting, the list a 404', async () => {
  const bare = await startTestFleet({ PLATFORM_PRIORITY: 'sim' }, { api: true, workers: false });
  try {
    const id = await createBot(bare);
    const token = botToken(bare.env.BOT_TOKEN_SECRET, id);
    const answer = await upload(bare.url, id, token, imageParts(PNG));
    expect([answer.status, answer.body.error.code]).toEqual([503, 'UNAVAILABLE']);
    expect(answer.body.error.message).toMatch(/S3_BUCKET_NAME/);
    // decided before the body is read: a bad one changes nothing
    expect((await upload(bare.url, id, token, imageParts(PNG, { type: 'selfie' }))).status).toBe(503);
    const listed = await bare.request('GET', `/api/bots/${id}/screenshots`);
    expect([listed.status, listed.body.error.message]).toEqual([404, 'screenshots are off: set S3_BUCKET_NAME']);
  } finally {
    await bare.close();
  }
});

/** In front of moto: answers the next `failures` object PUTs 503 SlowDown (as S3 does under load), counting every PUT. */
async function startS3FaultProxy(upstream: string) {
  const state = { failures: 0, puts: 0 };
  const server = http.createServer((req, res) => {
    if (req.method === 'PUT' && /\/screenshots\//.test(req.url ?? '')) {
      state.puts += 1;
      if (state.failures > 0) {
        state.failures -= 1;
        req.resume();
        req.on('end', () => {
          res.writeHead(503, { 'content-type': 'application/xml' });
          res.end(
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
          );
        });
        return;
      }
    }
    const forwarded = http.request(upstream + req.url, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

it('retries a failing S3 a bounded number of times (the SDK: 3 attempts, backoff with jitter), then answers 503 and keeps nothing', async () => {
  const proxy = await startS3FaultProxy(moto.url);
  const lines: string[] = [];
  const flaky = await startTestFleet(
    { PLATFORM_PRIORITY: 'sim', ...fleetS3Env(proxy.url, BUCKET) },
    { api: true, workers: false },
    { log: (line) => lines.push(line) },
  );
  try {
    const id = await createBot(flaky);
    const token = botToken(flaky.env.BOT_TOKEN_SECRET, id);
    // two failures: the third attempt keeps it
    Object.assign(proxy.state, { failures: 2, puts: 0 });
    const kept = await upload(flaky.url, id, token, imageParts(PNG));
    expect([kept.status, proxy.state.puts]).toEqual([201, 3]);
    expect(await storedKeys(id)).toEqual([kept.body.key]);
    // S3 keeps failing: three attempts, then a 503 that names no S3 detail
    Object.assign(proxy.state, { failures: 1000, puts: 0 });
    const refused = await upload(flaky.url, id, token, imageParts(PNG));
    expect([refused.status, refused.body.error.code, proxy.state.puts]).toEqual([503, 'UNAVAILABLE', 3]);
    expect(refused.body.error.message).toBe(
      'could not store the screenshot (S3 did not answer as expected); retry later',
    );
    // the reason is in the log
    const logged = lines
      .map((line) => JSON.parse(line))
      .find((entry) => entry.msg === 'could not store the screenshot');
    expect(logged).toMatchObject({ level: 'warn', botId: id, error: 'SlowDown: Please reduce your request rate.' });
    expect(await storedKeys(id)).toEqual([kept.body.key]);
  } finally {
    await flaky.close();
    await proxy.close();
  }
});
