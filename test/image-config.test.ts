import { BotDoc } from '../src/store/models';
import { toImageConfig } from '../src/store/bot.mapper';
import { storedBot } from './support/bot-docs';

/**
 * The config the upstream images read: they end themselves an hour after its `startTime`, so `startTime` is
 * the start of the hour that ends at the bot's maxDurationMs after its deploy.
 */
const HOUR = 3600_000;
const created = new Date('2026-12-07T10:00:00.000Z');
const deployed = new Date('2026-12-07T10:20:00.000Z');

it.each<[string, Record<string, unknown>, string, string]>([
  [
    'no maximum, deployed: an hour from the deploy',
    { deployedAt: deployed },
    '2026-12-07T10:20:00.000Z',
    '2026-12-07T11:20:00.000Z',
  ],
  [
    'a 3 h maximum: the hour starts 2 h after the deploy',
    { deployedAt: deployed, maxDurationMs: 3 * HOUR },
    '2026-12-07T12:20:00.000Z',
    '2026-12-07T13:20:00.000Z',
  ],
  [
    'a 30 min maximum: the hour started before the deploy',
    { deployedAt: deployed, maxDurationMs: HOUR / 2 },
    '2026-12-07T09:50:00.000Z',
    '2026-12-07T10:50:00.000Z',
  ],
  ['not deployed yet: from its creation', {}, '2026-12-07T10:00:00.000Z', '2026-12-07T11:00:00.000Z'],
])('%s', (_case, fields, startTime, endTime) => {
  const config = toImageConfig(storedBot({ createdAt: created, number: 7, ...fields }) as unknown as BotDoc);
  expect(config.startTime).toBeInstanceOf(Date);
  expect([config.startTime.toISOString(), config.endTime.toISOString()]).toEqual([startTime, endTime]);
  // the images' own rule: they end an hour after startTime, which is endTime
  expect(config.endTime.getTime() - config.startTime.getTime()).toBe(HOUR);
});
