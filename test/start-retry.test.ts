import { decideFailedStart, StartDecision, StartFailure } from '../src/domain/start-retry';

/** The rule that decides between another try, excluding the platform, and moving on without excluding it. */
const TABLE: Array<[StartFailure, number, number, StartDecision]> = [
  // failure, failed try, retries, decision
  ['failed', 0, 2, 'retry'],
  ['failed', 1, 2, 'retry'],
  ['failed', 2, 2, 'failed'],
  ['failed', 3, 2, 'failed'], // a try past the budget (the setting was lowered meanwhile) still ends here
  ['failed', 0, 0, 'failed'], // retries off: the first failure excludes the platform, as before
  ['failed', 0, 1, 'retry'],
  ['failed', 1, 1, 'failed'],
  ['timed-out', 0, 2, 'timed-out'], // slow is not broken: never retried, another try would wait as long
  ['timed-out', 2, 2, 'timed-out'],
  ['full', 0, 2, 'full'], // no room is not a failure: the bot moves on, the platform is not excluded
  ['full', 1, 2, 'full'], // a retry that finds the platform full moves on too, without spending the budget
  ['full', 2, 2, 'full'],
  ['full', 0, 0, 'full'],
];

it.each(TABLE)('%s on try %i with %i retries → %s', (failure, failedTry, retries, decision) => {
  expect(decideFailedStart(failure, failedTry, retries)).toBe(decision);
});
