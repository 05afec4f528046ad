import { choosePlatform, Exclusions, PlatformChoice } from '../src/domain/platform-choice';

/** The dispatcher's choice for one queued bot: priority k8s, aws, coolify (PLATFORM_PRIORITY order). */
const PRIORITY = ['k8s', 'aws', 'coolify'];
const room = (k8s: number, aws: number, coolify: number) =>
  new Map([
    ['k8s', k8s],
    ['aws', aws],
    ['coolify', coolify],
  ]);
const place = (platform: string, skippedFull: string[] = [], forgiveTimeouts = false): PlatformChoice => ({
  kind: 'place',
  platform,
  skippedFull,
  forgiveTimeouts,
});

const TABLE: Array<[string, Exclusions, Map<string, number>, PlatformChoice]> = [
  ['room everywhere: the first in priority', {}, room(1, 1, 1), place('k8s')],
  ['the first full: the next with room, the full one recorded', {}, room(0, 2, 1), place('aws', ['k8s'])],
  ['only the last has room', {}, room(0, 0, 1), place('coolify', ['k8s', 'aws'])],
  ['no room anywhere: it waits', {}, room(0, 0, 0), { kind: 'wait', forgiveTimeouts: false }],
  ['a failed platform is passed over, and not as full', { k8s: 'failed' }, room(1, 1, 1), place('aws')],
  ['a timed-out platform likewise', { k8s: 'timed-out' }, room(1, 0, 1), place('coolify', ['aws'])],
  [
    'its only usable platform full: it waits, though others have room',
    { k8s: 'failed', aws: 'failed' },
    room(5, 5, 0),
    { kind: 'wait', forgiveTimeouts: false },
  ],
  [
    'every platform timed out: forgiven, starts over in priority order',
    { k8s: 'timed-out', aws: 'timed-out', coolify: 'timed-out' },
    room(1, 1, 1),
    place('k8s', [], true),
  ],
  [
    'forgiven but nowhere with room: forgiven, and waits',
    { k8s: 'timed-out', aws: 'timed-out', coolify: 'timed-out' },
    room(0, 0, 0),
    { kind: 'wait', forgiveTimeouts: true },
  ],
  [
    'every platform excluded, some only timed out: those only, forgiven',
    { k8s: 'failed', aws: 'timed-out', coolify: 'timed-out' },
    room(1, 0, 1),
    place('coolify', ['aws'], true),
  ],
  [
    'failed on every platform: DEPLOY_FAILED, whatever room there is',
    { k8s: 'failed', aws: 'failed', coolify: 'failed' },
    room(1, 1, 1),
    { kind: 'deploy-failed' },
  ],
  [
    'an exclusion of a platform this fleet does not run changes nothing',
    { zoom: 'failed' },
    room(0, 1, 1),
    place('aws', ['k8s']),
  ],
  [
    'a platform missing from the free capacity has none',
    {},
    new Map([['coolify', 1]]),
    place('coolify', ['k8s', 'aws']),
  ],
];

it.each(TABLE)('%s', (_, excluded, free, choice) => {
  expect(choosePlatform(PRIORITY, excluded, free)).toEqual(choice);
});

it('a fleet running no platform has nowhere to place: DEPLOY_FAILED', () => {
  expect(choosePlatform([], {}, new Map())).toEqual({ kind: 'deploy-failed' });
});
