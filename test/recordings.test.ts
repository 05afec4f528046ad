import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { botToken } from '../src/auth/bot-token';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';
import { fleetS3Env, Moto, motoS3Client, startMoto } from './support/moto';

/** Recordings: the bot reports its object's key, its owner gets a short-lived presigned link (moto's S3). */
jest.setTimeout(120_000);

let moto: Moto;
let t: TestFleet;
const BUCKET = 'meeboter-recordings';

beforeAll(async () => {
  moto = await startMoto();
  const s3 = motoS3Client(moto.url);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'calls/weekly.webm', Body: 'the recording itself' }));
  s3.destroy();
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim', ...fleetS3Env(moto.url, BUCKET) });
});
afterAll(async () => {
  await t.close();
  await moto.stop();
});

const endedBot = async (metadata: Record<string, string>) => {
  const created = await t.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '200', ...metadata } },
  });
  return waitFor(async () => {
    const bot = (await t.request('GET', `/api/bots/${created.body.id}`)).body;
    return bot.status === 'ENDED' ? bot : null;
  }, 'the bot to end');
};

it('links the owner to the recording the bot reported, and moto serves it from that link', async () => {
  const bot = await endedBot({ 'sim.recordingKey': 'calls/weekly.webm' });
  expect(bot.recordingUrl).toMatch(new RegExp(`^${moto.url}/${BUCKET}/calls/weekly\\.webm\\?.*X-Amz-Signature=`));
  const answer = await t.request('GET', `/api/bots/${bot.id}/recording`);
  expect(answer.status).toBe(200);
  expect(Date.parse(answer.body.expiresAt)).toBeGreaterThan(Date.now());
  const download = await fetch(answer.body.url);
  expect(download.status).toBe(200);
  expect(await download.text()).toBe('the recording itself');
  // short-lived: fifteen minutes (moto serves it without checking the signature; S3 checks both)
  expect(new URL(answer.body.url).searchParams.get('X-Amz-Expires')).toBe('900');
});

it('is a 404 for another owner and for a bot without a recording', async () => {
  const bot = await endedBot({ 'sim.recordingKey': 'calls/weekly.webm' });
  const other = await t.fleet.apiKeys.create('recording-other-owner');
  expect((await t.request('GET', `/api/bots/${bot.id}/recording`, { auth: other })).status).toBe(404);
  const plain = await endedBot({});
  expect(plain.recordingUrl).toBeNull();
  expect((await t.request('GET', `/api/bots/${plain.id}/recording`)).status).toBe(404);
});

it('keeps a recordingKey sent with a repeat of the status the bot already has', async () => {
  const created = await t.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '600000' } },
  });
  const id = created.body.id as string;
  await waitFor(async () => (await t.request('GET', `/api/bots/${id}`)).body.status === 'IN_CALL', 'IN_CALL');
  const repeat = await t.request('POST', `/api/bots/${id}/status`, {
    auth: botToken(t.env.BOT_TOKEN_SECRET, id),
    body: { status: 'IN_CALL', recordingKey: 'calls/weekly.webm' },
  });
  expect(repeat.status).toBe(200);
  expect((await t.request('GET', `/api/bots/${id}`)).body.recordingUrl).toMatch(/calls\/weekly\.webm/);
  await t.request('DELETE', `/api/bots/${id}`);
});
