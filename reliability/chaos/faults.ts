import { PeerFault } from './platform-peer';
import { Random } from './random';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * One way to break the run: a peer's (`PeerFault`), a network path's, a fleet process's, Redis' or MongoDB's.
 * `target` names what it breaks: two faults of one target never overlap (a process is not killed while it is
 * already down); faults of different targets overlap as the seed says. `redis` marks a fault of Redis
 * itself: the API may answer 5xx only inside such a fault's window.
 */
export interface Fault extends PeerFault {
  target?: string;
  redis?: boolean;
}

export interface PlannedFault {
  kind: string;
  target: string;
  /** Milliseconds after the run's start. */
  at: number;
  durationMs: number;
}

export interface FaultRecord extends PlannedFault {
  /** Wall-clock times: the fault was set off (its begin() called) and was over (its end returned). */
  startedAt?: number;
  endedAt?: number;
  error?: string;
}

export interface ScheduleOptions {
  /** When the first fault may start and by when the last must have ended (ms after the run's start). */
  fromMs: number;
  untilMs: number;
  /** Mean gap between fault starts: smaller than a fault's length, so faults often overlap. */
  meanGapMs: number;
  minDurationMs: number;
  maxDurationMs: number;
}

const targetOf = (fault: Fault) => fault.target ?? fault.kind;

/** The whole schedule, drawn before the run starts, so a seed replays it whatever the run's timing. */
export function planFaults(faults: Fault[], random: Random, options: ScheduleOptions): PlannedFault[] {
  const busyUntil = new Map<string, number>();
  const plan: PlannedFault[] = [];
  if (faults.length === 0) return plan;
  for (let at = options.fromMs; ; at += Math.round(random.exponential(options.meanGapMs))) {
    const fault = random.pick(faults);
    const durationMs = random.int(options.minDurationMs, options.maxDurationMs);
    if (at + durationMs > options.untilMs) break;
    const target = targetOf(fault);
    if ((busyUntil.get(target) ?? 0) > at) continue;
    busyUntil.set(target, at + durationMs);
    plan.push({ kind: fault.kind, target, at, durationMs });
  }
  return plan;
}

/**
 * Carries out the plan from `startedAt` (wall clock): each fault begins at its time and ends after its
 * duration. A fault whose begin or end fails is recorded with the error (the run reports it) and its target
 * is left alone after that.
 */
export async function runFaults(
  plan: PlannedFault[],
  faults: Fault[],
  startedAt: number,
  onChange: (record: FaultRecord) => void,
): Promise<FaultRecord[]> {
  const byTarget = new Map<string, Fault[]>();
  for (const fault of faults) byTarget.set(targetOf(fault), [...(byTarget.get(targetOf(fault)) ?? []), fault]);
  const previous = new Map<string, Promise<void>>();
  const records: FaultRecord[] = plan.map((planned) => ({ ...planned }));
  const runs = records.map((record) => {
    const fault = byTarget.get(record.target)!.find((candidate) => candidate.kind === record.kind)!;
    const before = previous.get(record.target);
    const run = (async () => {
      await sleep(Math.max(0, startedAt + record.at - Date.now()));
      await before;
      try {
        // From the moment the fault is set off: a killed process's last moments count as the fault's.
        record.startedAt = Date.now();
        const end = await fault.begin();
        onChange(record);
        await sleep(Math.max(0, record.startedAt + record.durationMs - Date.now()));
        await end();
        record.endedAt = Date.now();
      } catch (error) {
        record.error = String(error);
        record.endedAt = Date.now();
      }
      onChange(record);
    })();
    previous.set(record.target, run);
    return run;
  });
  await Promise.all(runs);
  return records;
}
