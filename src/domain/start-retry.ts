/**
 * What follows a start that did not succeed on a platform. Pure: the occupy job supplies the failure and how
 * many tries the bot already had there, and carries out the answer.
 *
 * - `full`: the platform had no room. Not the bot's fault nor the platform's: the bot moves on at once and
 *   may come back when there is room (the platform is not excluded).
 * - `timed-out`: still starting when the start timeout passed. Slow is not broken, and another try would
 *   wait as long again: the bot moves on, the platform excluded until every platform has timed out.
 * - `failed`: it stopped before it ran, or the platform refused or failed its deploy. One broken task, slot
 *   or node should not cost the bot the platform: it is retried, on a new task / another slot / a new Job,
 *   under a new deployment name, up to `retries` times; then the platform is excluded for the bot.
 */
export type StartFailure = 'failed' | 'timed-out' | 'full';

/** `retry`: deploy the next try here; otherwise the bot is handed back with that outcome. */
export type StartDecision = 'retry' | StartFailure;

/**
 * @param failure how the start ended
 * @param failedTry the try that ended (0 for the first deploy on this platform)
 * @param retries how many more tries a failed start gets on this platform (`<NAME>_START_RETRIES`)
 */
export function decideFailedStart(failure: StartFailure, failedTry: number, retries: number): StartDecision {
  if (failure !== 'failed') return failure;
  return failedTry < retries ? 'retry' : 'failed';
}
