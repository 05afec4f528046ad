import { JobState } from 'bullmq';
import { tallyOccupancy, UNFINISHED_JOB_STATES, UnfinishedJobState, WAKE_ON_END_STATES } from '../domain/occupancy';
import { botIdOfOccupyJob } from '../../queues/queue-names';
import { PlatformQueue } from '../../queues/queues';

/**
 * The capacity rule of src/domain/occupancy.ts read from a platform's occupy queue, through BullMQ's public
 * getters only. Its state names are BullMQ's own (a compile error here if one is not).
 */
const queueStates = (states: readonly UnfinishedJobState[]): JobState[] => [...states];
const HOLDING = queueStates(UNFINISHED_JOB_STATES);

/**
 * The platform's occupancy, as the dispatcher counts it against the limit and `GET /api/platforms` shows it:
 * one count per capacity-holding state, read in one Redis step.
 */
export async function occupancyOf(queue: PlatformQueue): Promise<ReturnType<typeof tallyOccupancy>> {
  return tallyOccupancy(await queue.getJobCounts(...HOLDING));
}

/** The bots holding the platform's capacity (ids, not job bodies). */
export async function occupyingBotIds(queue: PlatformQueue): Promise<string[]> {
  // every one: getRanges answers two per state unless told the range
  return (await queue.getRanges(HOLDING, 0, -1)).map(botIdOfOccupyJob);
}

/** The bots whose occupy job their end wakes (parked ones). */
export async function wakeableBotIds(queue: PlatformQueue): Promise<string[]> {
  return (await queue.getRanges(queueStates(WAKE_ON_END_STATES), 0, -1)).map(botIdOfOccupyJob);
}
