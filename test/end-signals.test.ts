import { Types } from 'mongoose';
import { createRedis } from '../src/connections';
import { createEndSignals, endedSignal, EndSignals } from '../src/placement/end-signals';
import { applyKeyChanges } from '../src/store/bot-changes';
import { peerUrls, sleep, uniqueName, waitFor } from './support/fleet';
import { collectGarbage } from './support/gc';

/**
 * How a process holding bots learns they ended, against a real Redis: the announcement wakes the holder;
 * an end that was written but never announced is found by the database fallback, which reads a bounded
 * batch per pass, in turn, and never runs two passes at once. A wait with a timeout ends on time, also
 * after a garbage collection.
 */
const redis = createRedis(peerUrls().redisUrl, 'producer');
const opened: EndSignals[] = [];
// A producer connection has no offline queue: a command sent before it connects fails at once.
beforeAll(async () => {
  if (redis.status !== 'ready') await new Promise((resolve) => redis.once('ready', resolve));
});
afterAll(async () => {
  await Promise.all(opened.map((signals) => signals.close()));
  await redis.quit();
});

async function endSignals(hasEnded: (botId: string) => Promise<boolean>, prefix = uniqueName('mbsig')) {
  const signals = await createEndSignals({
    redis,
    subscriber: createRedis(peerUrls().redisUrl, 'subscriber'),
    prefix,
    hasEnded,
    pollMs: 50,
    databasePollMs: 5,
    databaseBatch: 10,
  });
  opened.push(signals);
  return { signals, prefix };
}

const botIds = (n: number) => Array.from({ length: n }, () => String(new Types.ObjectId()));

it('an announced end wakes the process holding the bot, and only that bot', async () => {
  const { signals, prefix } = await endSignals(() => Promise.resolve(false));
  const [ending, staying] = botIds(2);
  const never = new AbortController();
  const woken: string[] = [];
  const ended = signals.waitForEnd(ending, never.signal).then((outcome) => woken.push(`${ending}:${outcome}`));
  void signals.waitForEnd(staying, never.signal).then((outcome) => woken.push(`${staying}:${outcome}`));
  await applyKeyChanges(redis.multi(), endedSignal(prefix, ending)).exec();
  await ended;
  await sleep(200); // several Redis polls
  expect(woken).toEqual([`${ending}:ended`]);
  never.abort();
});

it('an end that was never announced is found by the database fallback: bounded batches, in turn, one pass at a time', async () => {
  const held = botIds(50);
  const endedInDatabase = held[37]; // beyond the first batches: found only if passes take the bots in turn
  let inFlight = 0;
  let maxInFlight = 0;
  const asked: string[] = [];
  const { signals } = await endSignals(async (botId) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    asked.push(botId);
    await sleep(3); // slower than the poll interval: passes would overlap if they were not chained
    inFlight--;
    return botId === endedInDatabase;
  });
  const jobs = held.map(() => new AbortController()); // one per held job, as in the platform workers
  const outcomes = new Map<string, string>();
  held.forEach(
    (botId, i) => void signals.waitForEnd(botId, jobs[i].signal).then((outcome) => outcomes.set(botId, outcome)),
  );

  await waitFor(() => outcomes.get(endedInDatabase) === 'ended', 'the unannounced end to be found');
  expect(maxInFlight).toBe(1);
  const untilFound = asked.slice(0, asked.indexOf(endedInDatabase) + 1);
  expect(untilFound.length).toBeLessThanOrEqual(held.length); // no bot asked twice before every bot was asked once
  expect(new Set(untilFound).size).toBe(untilFound.length);
  jobs.forEach((job) => job.abort());
  await waitFor(() => outcomes.size === held.length, 'every waiter to settle');
  expect([...outcomes.values()].filter((o) => o === 'aborted')).toHaveLength(49);
});

it('a wait with a timeout ends on time after a garbage collection, and leaves no waiter behind', async () => {
  const { signals, prefix } = await endSignals(() => Promise.resolve(false));
  const held = botIds(20);
  const job = new AbortController();
  // The start-up poll waits this way between its reads. Node 20 forgets an AbortSignal.timeout() inside
  // AbortSignal.any() at the first collection, so a wait built on one lasted until the bot ended.
  const outcomes = held.map((botId) => signals.waitForEnd(botId, job.signal, 300));
  await sleep(50);
  collectGarbage();
  const settled = await Promise.race([Promise.all(outcomes), sleep(5000).then(() => 'still waiting after 5 s')]);
  expect(settled).toEqual(held.map(() => 'timed-out'));
  // An end announced after the wait timed out reaches nobody, and a new wait still hears it.
  const again = signals.waitForEnd(held[0], job.signal, 60_000);
  await applyKeyChanges(redis.multi(), endedSignal(prefix, held[0])).exec();
  expect(await again).toBe('ended');
  job.abort();
});
