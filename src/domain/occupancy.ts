/**
 * What "holds a platform's capacity" means, the one rule the dispatcher, `GET /api/platforms` (and the
 * metrics and pool stats read from it), recovery, reconciliation and withdrawal all follow.
 *
 * A bot holds one unit of a platform's limit while its occupy job on that platform is unfinished: from the
 * moment the dispatcher assigns it (adds the job) until the job completes, which it does only once nothing
 * of the bot runs there (the platform confirmed its container gone, or nothing was deployed). Where the bot
 * stands meanwhile is the job's state, named as the job queue names it.
 *
 * This module is pure: no queue, database or HTTP import may appear here.
 */
export const JOB_STATES = [
  'waiting',
  'prioritized',
  'waiting-children',
  'active',
  'delayed',
  'completed',
  'failed',
  'unknown',
] as const;
export type JobStateName = (typeof JOB_STATES)[number];

export interface JobStateRule {
  /** Unfinished: the job still stands for its bot (an occupy job: holds the platform's capacity). */
  unfinished: boolean;
  /** The `GET /api/platforms` count it is part of: `active` (on the platform) or `queued` (waiting for a worker). */
  shownAs: 'active' | 'queued' | null;
  /**
   * What withdrawing an ended bot does to its occupy job: `remove` a job that waits to deploy a bot never
   * claimed (nothing of it runs, so the capacity is free at once), `wake` a parked one (its run stops the
   * container), or nothing (a running job hears the end itself; a claimed bot's waiting job stops what may
   * run when it runs).
   */
  whenBotEnds: 'remove-unless-claimed' | 'wake' | 'none';
}

export const JOB_STATE_RULES: Readonly<Record<JobStateName, JobStateRule>> = {
  // Assigned and waiting for a worker; or back in line after a run (woken from parking, handed back at a
  // shutdown, retried after a failure), its bot claimed.
  waiting: { unfinished: true, shownAs: 'queued', whenBotEnds: 'remove-unless-claimed' },
  prioritized: { unfinished: true, shownAs: 'queued', whenBotEnds: 'remove-unless-claimed' },
  'waiting-children': { unfinished: true, shownAs: 'queued', whenBotEnds: 'remove-unless-claimed' },
  // A worker runs it: deploying, starting, or holding a bot only that process can stop.
  active: { unfinished: true, shownAs: 'active', whenBotEnds: 'none' },
  // Parked (its bot runs and no worker keeps anything of it), or waiting to retry after a failed run.
  delayed: { unfinished: true, shownAs: 'active', whenBotEnds: 'wake' },
  completed: { unfinished: false, shownAs: null, whenBotEnds: 'none' },
  failed: { unfinished: false, shownAs: null, whenBotEnds: 'none' },
  // No such job.
  unknown: { unfinished: false, shownAs: null, whenBotEnds: 'none' },
};

export type UnfinishedJobState = Exclude<JobStateName, 'completed' | 'failed' | 'unknown'>;

/** The states in which a job is unfinished; for an occupy job, those that hold the platform's capacity. */
export const UNFINISHED_JOB_STATES: readonly UnfinishedJobState[] = JOB_STATES.filter(
  (state): state is UnfinishedJobState => JOB_STATE_RULES[state].unfinished,
);

/** Whether a job in `state` is unfinished (an occupy job: holds its platform's capacity). */
export function isUnfinished(state: string): boolean {
  return (JOB_STATE_RULES as Record<string, JobStateRule | undefined>)[state]?.unfinished ?? false;
}

/**
 * A platform's occupancy from the number of its occupy jobs per state: what `GET /api/platforms` shows
 * (`active`, `queued`) and what the dispatcher counts against the limit (`occupied`, always their sum).
 */
export function tallyOccupancy(counts: Partial<Record<string, number>>): {
  active: number;
  queued: number;
  occupied: number;
} {
  let active = 0;
  let queued = 0;
  for (const state of UNFINISHED_JOB_STATES) {
    const n = counts[state] ?? 0;
    if (JOB_STATE_RULES[state].shownAs === 'active') active += n;
    else queued += n;
  }
  return { active, queued, occupied: active + queued };
}

/**
 * What withdrawing an ended bot does to its occupy job in `state`. `claimed`: the bot was claimed on this
 * platform (it may run there), so its job alone may stop what runs and is never removed.
 */
export function withdrawalOf(state: string, claimed: boolean): 'remove' | 'wake' | 'none' {
  const rule = (JOB_STATE_RULES as Record<string, JobStateRule | undefined>)[state];
  if (rule?.whenBotEnds === 'wake') return 'wake';
  if (rule?.whenBotEnds === 'remove-unless-claimed' && !claimed) return 'remove';
  return 'none';
}

/** The states whose occupy job an ended bot wakes (reconciliation wakes those whose wake-up was lost). */
export const WAKE_ON_END_STATES: readonly UnfinishedJobState[] = UNFINISHED_JOB_STATES.filter(
  (state) => JOB_STATE_RULES[state].whenBotEnds === 'wake',
);

/**
 * Where an ended bot's container still runs, as its occupy job finds it: on this worker's own host (or on a
 * platform any worker can stop), on another host that may be alive, or nowhere (confirmed stopped, never
 * deployed, or on a host gone for good, whose processes died with it).
 */
export type EndedContainerPlace = 'here' | 'another-host' | 'nowhere';

/**
 * What an ended bot's occupy job does, by where its container runs. The unit of capacity is freed only once
 * nothing of the bot runs: a container this worker can stop is stopped first; one that only another host
 * may stop (a `local` process) keeps the unit held, its job waiting for a worker of that host, until that
 * host stopped it or counts as gone (its liveness lease lapsed: LOCAL_HOST_GONE_AFTER_MS after its last
 * renewal).
 */
const ENDED_CONTAINER_RULES: Readonly<Record<EndedContainerPlace, 'stop-then-free' | 'hold' | 'free'>> = {
  here: 'stop-then-free',
  'another-host': 'hold',
  nowhere: 'free',
};

export function whenEndedBotRuns(place: EndedContainerPlace): 'stop-then-free' | 'hold' | 'free' {
  return ENDED_CONTAINER_RULES[place];
}
