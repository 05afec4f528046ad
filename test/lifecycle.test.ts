import { botToken } from '../src/auth/bot-token';
import {
  BOT_REPORTABLE_STATUSES,
  BOT_STATUSES,
  BotStatus,
  canTransition,
  isTerminal,
} from '../src/domain/bot.lifecycle';
import { changesAlongsideStatus } from '../src/fleet';
import { endedChannel } from '../src/placement/end-signals';
import { createLifecycle } from '../src/services/lifecycle.service';
import { endedSet } from '../src/store/live-state';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/** The lifecycle of docs/lifecycle.md, enforced server-side on what bots report. */
let t: TestFleet;
beforeAll(async () => {
  // a callbackUrl on loopback, which only an explicit allow list opens (nothing delivers: no workers)
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'sim', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' },
    { api: true, workers: false },
  );
});
afterAll(() => t.close());

async function botAt(status: BotStatus) {
  const id = (await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } })).body.id as string;
  await t.fleet.repo.update(id, { status });
  return { id, token: botToken(t.env.BOT_TOKEN_SECRET, id) };
}

const report = (id: string, token: string, status: string) =>
  t.request('POST', `/api/bots/${id}/status`, { auth: token, body: { status } });

const table = BOT_STATUSES.flatMap((from) => BOT_REPORTABLE_STATUSES.map((to) => [from, to] as [BotStatus, BotStatus]));

describe('every transition a bot can report', () => {
  // A bot that has ended has no more say: its token is refused with 410 before the lifecycle is asked.
  it.each(table.filter(([from, to]) => !canTransition(from, to) && from !== to))(
    '%s → %s is refused with 409 (410 once ended)',
    async (from, to) => {
      const { id, token } = await botAt(from);
      const res = await report(id, token, to);
      if (isTerminal(from)) {
        expect(res.status).toBe(410);
        expect(res.body.error.code).toBe('GONE');
      } else {
        expect(res.status).toBe(409);
        expect(res.body.error).toMatchObject({ code: 'ILLEGAL_TRANSITION', details: { from, to } });
      }
      expect((await t.fleet.repo.findById(id))!.status).toBe(from);
    },
  );

  it.each(table.filter(([from, to]) => canTransition(from, to)))('%s → %s is accepted', async (from, to) => {
    const { id, token } = await botAt(from);
    const res = await report(id, token, to);
    expect(res.status).toBe(200);
    const bot = (await t.fleet.repo.findById(id))!;
    expect(bot.status).toBe(to);
    if (isTerminal(to)) expect(bot.endReason).toBe(to === 'ENDED' ? 'COMPLETED' : 'BOT_ERROR');
  });

  it('the same live status reported twice is a harmless repeat, a terminal one is not', async () => {
    const { id, token } = await botAt('IN_CALL');
    expect((await report(id, token, 'IN_CALL')).status).toBe(200);
    expect((await report(id, token, 'ENDED')).status).toBe(200);
    expect((await report(id, token, 'ENDED')).status).toBe(410);
  });
});

it('20 concurrent conflicting reports leave one consistent history', async () => {
  const { id, token } = await botAt('JOINING_CALL');
  const choices: BotStatus[] = ['IN_WAITING_ROOM', 'IN_CALL', 'LEAVING', 'ENDED', 'FATAL'];
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => report(id, token, choices[i % choices.length])),
  );
  expect(results.every((r) => [200, 409, 410].includes(r.status))).toBe(true);

  const bot = (await t.fleet.repo.findById(id))!;
  const history = (await t.fleet.repo.events(id, 1000)).filter((e) => e.type === 'status' && e.data);
  const changes = history
    .map((e) => ({ status: e.status!, version: JSON.parse(e.data as string).version as number }))
    .filter((c) => c.version !== undefined);
  // versions are 1..n with no gaps or repeats, and the document agrees with the last one
  expect(changes.map((c) => c.version)).toEqual(changes.map((_, i) => i + 1));
  expect(bot.statusVersion).toBe(changes.length);
  expect(bot.status).toBe(changes[changes.length - 1].status);
  // each step is one the lifecycle allows, starting from where the bot was
  const path: BotStatus[] = ['JOINING_CALL', ...changes.map((c) => c.status)];
  for (let i = 1; i < path.length; i++)
    expect([path[i - 1], path[i], canTransition(path[i - 1], path[i])]).toEqual([path[i - 1], path[i], true]);
  expect(isTerminal(bot.status)).toBe(true);
  // accepted answers match the history: one per change
  expect(results.filter((r) => r.status === 200 && r.body.status).length).toBeGreaterThanOrEqual(changes.length);
});

it('an end is announced and leaves the global queue in the step that ends it, even if its process dies right after', async () => {
  const callbackUrl = 'http://127.0.0.1:9/hook';
  const id = (await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom, callbackUrl } })).body
    .id as string;
  expect(await t.fleet.globalQueue.position(id)).not.toBeNull();
  const subscriber = t.fleet.redis.duplicate({ enableOfflineQueue: true });
  const heard: string[] = [];
  await subscriber.subscribe(endedChannel(t.env.REDIS_PREFIX));
  subscriber.on('message', (_channel, botId) => heard.push(botId));
  // The fleet's own step, in a process that dies as soon as the end is recorded: nothing after it runs.
  const dying = createLifecycle(t.fleet.repo, {
    changesAlongside: changesAlongsideStatus(t.fleet.liveState, t.fleet.globalQueue, t.env.REDIS_PREFIX),
    withdraw: () => Promise.reject(new Error('the process died')),
    lastHeartbeat: () => Promise.resolve(null),
    announce: (bot) => t.fleet.outbox.announce(bot),
    notify: () => Promise.reject(new Error('the process died')),
  });
  await expect(dying.end(id, 'ENDED', 'CANCELLED')).rejects.toThrow('the process died');
  expect((await t.fleet.repo.findById(id))!.status).toBe('ENDED');
  expect(await t.fleet.globalQueue.position(id)).toBeNull();
  expect(await t.fleet.redis.zscore(endedSet(t.env.REDIS_PREFIX), id)).not.toBeNull();
  // its webhook event too, for whichever process delivers webhooks
  expect((await t.fleet.outbox.next(id))?.event.data.bot.status).toBe('ENDED');
  await waitFor(() => heard.includes(id), 'the end announced');
  await subscriber.quit();
});
