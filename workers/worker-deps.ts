import { Processor, Worker, WorkerOptions } from 'bullmq';
import { Logger } from '../src/logger';
import { OccupyContext } from './occupy';
import { Placement } from '../src/placement/placement.service';
import { Lifecycle } from '../src/services/lifecycle.service';
import { Queues } from '../queues/queues';

/** What every worker group gets from the fleet. `makeWorker` opens a Worker on its own connection. */
export interface WorkerDeps {
  queues: Queues;
  placement: Placement;
  lifecycle: Lifecycle;
  occupyContext: Omit<OccupyContext, 'settings' | 'platform' | 'log'>;
  log: Logger;
  dispatchTickMs: number;
  lockDurationMs: number;
  makeWorker<T>(name: string, processor: Processor<T>, options: Partial<WorkerOptions>): Worker<T>;
  /** Counts one run of a periodic job (`<prefix>:sweeps:<name>:runs`), for operators and tests. */
  countRun(name: string): Promise<void>;
  /**
   * Upserts a job scheduler now and remembers it, so recovery can put it back after Redis lost its data
   * (schedulers live in Redis only).
   */
  keepScheduled(upsert: () => Promise<unknown>): Promise<void>;
}
