/**
 * Where the dispatcher sends a queued bot, given the platforms in PLATFORM_PRIORITY order, what the bot's
 * earlier attempts excluded, and the capacity free on each platform now. Pure: the dispatcher reads the
 * inputs from Redis and carries out the answer.
 *
 * - A platform the bot's start `failed` on (after its retries there) or `timed-out` on is not offered again.
 * - Slow is not broken: a bot every platform is excluded for, some of them only for timing out, has its
 *   time-outs forgiven and starts over on those platforms, waiting for capacity like any queued bot (its
 *   queue timeout still applies).
 * - A bot whose start failed on every platform cannot be placed: it ends FATAL `DEPLOY_FAILED`.
 * - Otherwise it goes to the first platform it may use that has room; the ones before it that it may use
 *   were full (recorded with the assignment). With no room on any, it waits, and younger bots may still be
 *   placed on platforms it may not use.
 */
export type ExclusionReason = 'failed' | 'timed-out';
/** Platform name → why the bot must not be offered to it again. */
export type Exclusions = Readonly<Record<string, ExclusionReason>>;

export type PlatformChoice =
  | { kind: 'place'; platform: string; skippedFull: string[]; forgiveTimeouts: boolean }
  | { kind: 'wait'; forgiveTimeouts: boolean }
  | { kind: 'deploy-failed' };

/**
 * @param priority the platforms' names, in PLATFORM_PRIORITY order
 * @param excluded the bot's exclusions
 * @param free the capacity free on each platform now (none if it is missing: full, draining or unknown)
 */
export function choosePlatform(
  priority: readonly string[],
  excluded: Exclusions,
  free: ReadonlyMap<string, number>,
): PlatformChoice {
  let usable = priority.filter((platform) => !excluded[platform]);
  let forgiveTimeouts = false;
  if (usable.length === 0) {
    usable = priority.filter((platform) => excluded[platform] !== 'failed');
    if (usable.length === 0) return { kind: 'deploy-failed' };
    forgiveTimeouts = true;
  }
  const index = usable.findIndex((platform) => (free.get(platform) ?? 0) > 0);
  if (index === -1) return { kind: 'wait', forgiveTimeouts };
  return { kind: 'place', platform: usable[index], skippedFull: usable.slice(0, index), forgiveTimeouts };
}
