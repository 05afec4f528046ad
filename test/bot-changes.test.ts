import { changesKey, createBotChanges, partitionOf } from '../src/store/bot-changes';
import { uniqueName, waitFor } from './support/fleet';
import { redisOnly } from './support/redis-only';

/** Changes decided in Redis: one version at a time, on the real Redis of the run. */
const peers = redisOnly('mbtest_changes');
const { prefix, connect, connections } = peers;
afterAll(() => peers.close());

interface Tagged {
  tags: number[];
}

it('20 concurrent conflicting updates of one bot give versions 1..20 in order, none lost', async () => {
  // Four connections, so that reads and applies of different callers really interleave.
  const writers = Array.from({ length: 4 }, () => createBotChanges(connect(), prefix));
  const botId = uniqueName('bot');
  let decisions = 0;
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, n) =>
      writers[n % 4].update<Tagged>(botId, (current) => {
        decisions++;
        return { doc: { tags: [...(current?.doc.tags ?? []), n] }, event: { type: 'tagged', n } };
      }),
    ),
  );

  const versions = results.map((result) => ('version' in result ? result.version : 0));
  expect([...versions].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  // Conflicts did happen, and were retried: otherwise this test would prove nothing.
  expect(decisions).toBeGreaterThan(20);

  const live = await writers[0].read<Tagged>(botId);
  expect(live!.version).toBe(20);
  expect([...live!.doc.tags].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));

  // The stream holds each version once, in order, each built on the one before.
  const entries = await connections[0].xrange(changesKey(prefix, partitionOf(botId, 4)), '-', '+');
  const mine = entries
    .map(([, fields]) =>
      Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]])),
    )
    .filter((fields) => fields.bot === botId);
  expect(mine.map((fields) => Number(fields.version))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  expect(mine.map((fields) => fields.kind)).toEqual(['insert', ...Array(19).fill('snapshot')]);
  mine.forEach((fields, i) => {
    const tags = JSON.parse(fields.doc).tags as number[];
    expect(tags).toHaveLength(i + 1);
    if (i > 0) expect(tags.slice(0, i)).toEqual(JSON.parse(mine[i - 1].doc).tags);
    expect(JSON.parse(fields.event).n).toBe(tags[i]);
  });
});

it('a create finds the bot existing; a refusal writes nothing', async () => {
  const changes = createBotChanges(connect(), prefix);
  const botId = uniqueName('bot');
  const created = await changes.apply(botId, 0, { n: 1 });
  expect(created).toMatchObject({ version: 1, mark: { partition: partitionOf(botId, 4) } });
  expect(await changes.apply(botId, 0, { n: 2 })).toEqual({ conflict: { version: 1 } });
  expect(await changes.apply(botId, 5, { n: 2 })).toEqual({ conflict: { version: 1 } });

  const refused = await changes.update<{ n: number }>(botId, (current) =>
    current!.doc.n === 1 ? { refused: 'already one' } : { doc: { n: 1 } },
  );
  expect(refused).toEqual({ refused: 'already one' });
  const live = await changes.read<{ n: number }>(botId);
  expect(live).toMatchObject({ version: 1, doc: { n: 1 } });
  // Redis's clock, in ms
  expect(Math.abs(live!.at - Number((await connections[0].time())[0]) * 1000)).toBeLessThan(60_000);
  expect(await changes.read(uniqueName('bot'))).toBeNull();
});

it('partitions are stable and spread the bots', () => {
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 1000; i++) counts[partitionOf(`bot-${i}`, 4)]++;
  expect(counts.every((count) => count > 150)).toBe(true);
  // FNV-1a of "a" is 0xe40c292c: the hash every process and release must agree on
  expect(partitionOf('a', 1000)).toBe(0xe40c292c % 1000);
});

it('key changes alongside a change are made with it, and not at all when it conflicts', async () => {
  const changes = createBotChanges(connect(), prefix);
  const redis = connections[connections.length - 1];
  const botId = uniqueName('bot');
  const due = `${prefix}:${uniqueName('due')}`;
  const seen = `${prefix}:${uniqueName('seen')}`;
  await redis.sadd(seen, botId);
  await redis.zadd(due, 5, 'other');

  // A conflict (the bot is not at version 3) makes none of them.
  expect(
    await changes.apply(botId, 3, { n: 1 }, undefined, 0, [{ op: 'zadd', key: due, score: 7, member: botId }]),
  ).toEqual({ conflict: { version: 0 } });
  expect(await redis.zscore(due, botId)).toBeNull();

  await changes.apply(botId, 0, { n: 1 }, undefined, 0, [{ op: 'zadd', key: due, score: 7, member: botId }]);
  expect(await redis.zscore(due, botId)).toBe('7');

  await changes.apply(botId, 1, { n: 2 }, undefined, 0, [
    { op: 'zrem', key: due, member: botId },
    { op: 'srem', key: seen, member: botId },
    { op: 'zadd', key: due, score: 9, member: 'third' },
  ]);
  expect(await redis.zrange(due, 0, -1, 'WITHSCORES')).toEqual(['other', '5', 'third', '9']);
  expect(await redis.sismember(seen, botId)).toBe(0);
  expect((await changes.read<{ n: number }>(botId))!.doc.n).toBe(2);

  // A hash field dropped, a sorted set trimmed up to a score, a message published (an end's announcement).
  const kept = `${prefix}:${uniqueName('kept')}`;
  const channel = `${prefix}:${uniqueName('channel')}`;
  await redis.hset(kept, botId, 'x', 'other', 'y');
  const subscriber = connect();
  const heard: string[] = [];
  await subscriber.subscribe(channel);
  subscriber.on('message', (_channel, message) => heard.push(message));
  const conflicting = [{ op: 'publish', key: channel, member: 'conflict' }] as const;
  expect(await changes.apply(botId, 1, { n: 3 }, undefined, 0, [...conflicting])).toEqual({ conflict: { version: 2 } });
  await changes.apply(botId, 2, { n: 3 }, undefined, 0, [
    { op: 'hdel', key: kept, member: botId },
    { op: 'ztrim', key: due, score: 5 },
    { op: 'publish', key: channel, member: botId },
  ]);
  expect(await redis.hgetall(kept)).toEqual({ other: 'y' });
  expect(await redis.zrange(due, 0, -1)).toEqual(['third']);
  await waitFor(() => heard.length > 0, 'the published message');
  expect(heard).toEqual([botId]);
});

it('restore puts back only a newer version (or the same one decided later), never over an undone create', async () => {
  const changes = createBotChanges(connect(), prefix);
  const held = async (botId: string) => {
    const live = await changes.read<{ n: number }>(botId);
    return live && { version: live.version, at: live.at, n: live.doc.n };
  };
  // Redis at version 2 (decided at `at`), MongoDB offering [version, at offset]: what Redis holds after.
  const cases: Array<{ offered: [number, number]; putBack: boolean }> = [
    { offered: [3, -5000], putBack: true }, // newer version, whatever its time
    { offered: [2, 1], putBack: true }, // the same version, decided later: Redis lost the first
    { offered: [2, 0], putBack: false }, // the very version Redis holds
    { offered: [2, -1], putBack: false }, // the same version, decided earlier
    { offered: [1, 5000], putBack: false }, // older
  ];
  for (const { offered, putBack } of cases) {
    const botId = uniqueName('bot');
    await changes.apply(botId, 0, { n: 1 });
    const { at } = (await changes.apply(botId, 1, { n: 2 })) as { at: number };
    const [version, offset] = offered;
    const answer = await changes.restore<{ n: number }>(botId, version, at + offset, { n: 99 }, 0);
    expect({ offered, answer }).toEqual({ offered, answer: putBack ? { n: 2 } : undefined });
    expect({ offered, held: await held(botId) }).toEqual({
      offered,
      held: putBack ? { version, at: at + offset, n: 99 } : { version: 2, at, n: 2 },
    });
  }

  // a bot Redis does not hold is put back (null: nothing was held); one whose create was undone is not
  const missing = uniqueName('bot');
  expect(await changes.restore(missing, 4, Date.now(), { n: 4 }, 60_000)).toBeNull();
  expect((await held(missing))?.version).toBe(4);
  expect(await connections[0].pttl(`${prefix}:bot:${missing}`)).toBeGreaterThan(0);
  const undone = uniqueName('bot');
  await changes.apply(undone, 0, { n: 1 });
  await changes.forget(undone);
  expect(await changes.restore(undone, 4, Date.now(), { n: 4 }, 0)).toBeUndefined();
  expect(await held(undone)).toBeNull();
});
