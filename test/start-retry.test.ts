import { decideFailedStart, StartDecision, StartFailure } from '../src/domain/start-retry';
import { botIdOfDeployment, deploymentName } from '../src/platforms/platform';

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

it("names every try apart, within the 36 characters ECS allows a startedBy, and never as another platform's name", () => {
  const botId = '0123456789abcdef01234567';
  const names = [0, 1, 2, 9].map((startTry) => deploymentName(botId, 'aws', startTry));
  expect(names).toEqual([`mb-${botId}-aws`, `mb-${botId}-aws--1`, `mb-${botId}-aws--2`, `mb-${botId}-aws--9`]);
  for (const name of names) expect(name.length).toBeLessThanOrEqual(36);
  expect(names.map(botIdOfDeployment)).toEqual(Array(4).fill(botId));
  // `sim-1` is a valid platform name: its first try must not be the second try of `sim`.
  expect(deploymentName(botId, 'sim', 1)).not.toBe(deploymentName(botId, 'sim-1', 0));
});
