import {
  isUnfinished,
  JOB_STATES,
  tallyOccupancy,
  UNFINISHED_JOB_STATES,
  WAKE_ON_END_STATES,
  whenEndedBotRuns,
  withdrawalOf,
} from '../src/domain/occupancy';

/**
 * "Holds a platform's capacity", as a table: for each state of a bot's occupy job, written out rather than
 * computed, whether it holds the capacity, where GET /api/platforms shows it, and what withdrawing the
 * ended bot does to it, unclaimed and claimed.
 */
const TABLE: Array<
  [state: string, holds: boolean, shownAs: 'active' | 'queued' | null, unclaimed: string, claimed: string]
> = [
  ['waiting', true, 'queued', 'remove', 'none'],
  ['prioritized', true, 'queued', 'remove', 'none'],
  ['waiting-children', true, 'queued', 'remove', 'none'],
  ['active', true, 'active', 'none', 'none'],
  ['delayed', true, 'active', 'wake', 'wake'],
  ['completed', false, null, 'none', 'none'],
  ['failed', false, null, 'none', 'none'],
  ['unknown', false, null, 'none', 'none'],
  // a state name the job queue may add one day holds nothing until the table says otherwise
  ['paused', false, null, 'none', 'none'],
];

it.each(TABLE)(
  '%s: holds capacity %s, shown as %s, withdrawn unclaimed: %s, claimed: %s',
  (state, holds, shownAs, unclaimed, claimed) => {
    expect(isUnfinished(state)).toBe(holds);
    const shown = tallyOccupancy({ [state]: 3 });
    expect(shown).toEqual({
      active: shownAs === 'active' ? 3 : 0,
      queued: shownAs === 'queued' ? 3 : 0,
      occupied: holds ? 3 : 0,
    });
    expect(withdrawalOf(state, false)).toBe(unclaimed);
    expect(withdrawalOf(state, true)).toBe(claimed);
  },
);

it('every state of the rule is in the table, and the lists derived from it agree with it', () => {
  expect([...JOB_STATES].sort()).toEqual(
    TABLE.map(([state]) => state)
      .filter((state) => state !== 'paused')
      .sort(),
  );
  expect([...UNFINISHED_JOB_STATES].sort()).toEqual(
    TABLE.filter(([, holds]) => holds)
      .map(([state]) => state)
      .sort(),
  );
  expect(WAKE_ON_END_STATES).toEqual(['delayed']);
});

it('occupied is always active + queued, over counts of every state at once', () => {
  const counts = { waiting: 2, prioritized: 1, 'waiting-children': 0, active: 4, delayed: 5, completed: 90, failed: 7 };
  expect(tallyOccupancy(counts)).toEqual({ active: 9, queued: 3, occupied: 12 });
});

/**
 * An ended bot's unit of capacity, by where its container still runs: freed only once nothing of it runs. A
 * container only another host may stop (a `local` process of a host whose liveness lease lives) keeps it held.
 */
it.each([
  ['here', 'stop-then-free'],
  ['another-host', 'hold'],
  ['nowhere', 'free'],
] as const)('an ended bot whose container runs %s: %s', (place, rule) => {
  expect(whenEndedBotRuns(place)).toBe(rule);
});
