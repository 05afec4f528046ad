import { Worker } from 'bullmq';
import {
  SweepDeps,
  sweepDeployTimeouts,
  sweepHeartbeats,
  sweepLeaveGrace,
  SweepResult,
  sweepWebhookWakes,
} from './sweeps';
import { JobPayloads, SWEEP_NAMES, SweepName, SWEEPS_QUEUE } from '../queues/queue-names';
import { metrics, timedSweep } from '../src/metrics';
import { WorkerDeps } from './worker-deps';

const SWEEPS: Record<SweepName, (deps: SweepDeps) => Promise<SweepResult>> = {
  'heartbeat-expiry': sweepHeartbeats,
  'deploy-timeout': sweepDeployTimeouts,
  'leave-grace': sweepLeaveGrace,
  'webhook-wake': sweepWebhookWakes,
};

/**
 * The health sweeps as BullMQ job schedulers: every process upserts the same scheduler ids, so each sweep
 * runs once per SWEEP_INTERVAL_MS across all processes. Each run is counted in `<prefix>:sweeps:<name>:runs`.
 */
export async function startSweepsWorker(deps: WorkerDeps, sweepDeps: SweepDeps, intervalMs: number): Promise<Worker> {
  for (const name of SWEEP_NAMES) {
    await deps.keepScheduled(() =>
      deps.queues.sweeps.upsertJobScheduler(name, { every: intervalMs }, { name, data: {} }),
    );
  }
  return deps.makeWorker<JobPayloads['sweep']>(
    SWEEPS_QUEUE,
    async (job) => {
      const sweep = SWEEPS[job.name as SweepName];
      if (!sweep) return { skipped: job.name };
      const result = await timedSweep(job.name, () => sweep(sweepDeps));
      if (job.name === 'heartbeat-expiry') metrics.heartbeatsExpired.inc(result.acted);
      await deps.countRun(job.name);
      if (result.acted) deps.log.info('sweep acted', { sweep: job.name, ...result });
      return result;
    },
    { concurrency: 1 },
  );
}
