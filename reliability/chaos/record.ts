import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FaultRecord } from './faults';
import { INVARIANTS, Violations } from './invariants';

/** The record of one run, written as JSON to reliability/results/ (RELIABILITY.md describes each field). */
export interface RunRecord {
  seed: number;
  minutes: number;
  platforms: Array<{ name: string; limit: number }>;
  /** How Redis ran (`single` or `sentinel`) and how the fleet reached its peers (`toxiproxy` or `direct`). */
  redis: 'single' | 'sentinel';
  network: 'toxiproxy' | 'direct';
  startedAt: string;
  /** Wall-clock seconds: the loaded, faulted part; the settling after it; the whole run with startup. */
  seconds: { load: number; settle: number; total: number };
  /** The bound every bot had to end within after the last fault, and the no-container check with it. */
  settleBoundSeconds: number;
  bots: { created: number; failedCreates: number; byOutcome: Record<string, number>; actionsTaken: number };
  faults: {
    byKind: Record<string, { count: number; failed: number; worstRecovery: Recovery }>;
    schedule: FaultRecord[];
  };
  invariants: Record<string, { violations: number; examples: unknown[] }>;
  api: { answers: number; byStatus: Record<string, number>; unreachable: number };
  webhooks: { events: number; deliveries: number };
  sampling: { samples: number; unanswered: number };
  /** Where the run kept its processes' logs (kept only when it failed). */
  logs?: string;
  violations: number;
}

/**
 * Time to recover after a fault of a kind, worst over the run, in ms from the fault's end: until the API
 * answered a request below 500 again (`api`), and until a new container was seen on any peer (`placement`;
 * null when the load offered no bot to place before the run's end).
 */
export interface Recovery {
  api: number | null;
  placement: number | null;
}

export function invariantsOf(violations: Violations): RunRecord['invariants'] {
  return Object.fromEntries(
    INVARIANTS.map((name) => [
      name,
      { violations: violations.counts.get(name)!, examples: violations.examples.get(name)! },
    ]),
  );
}

export function writeRecord(dir: string, record: RunRecord): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(
    dir,
    `chaos-seed${record.seed}-${record.minutes}m-${record.startedAt.replace(/[:.]/g, '-')}.json`,
  );
  writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
  return file;
}

/** One screen: what ran, what broke, and each invariant's count. */
export function summary(record: RunRecord, file: string): string {
  const lines = [
    `chaos seed ${record.seed}: ${record.minutes} min on ${record.platforms.map((p) => `${p.name} (limit ${p.limit})`).join(', ')}`,
    `  ${record.seconds.load} s loaded and faulted, ${record.seconds.settle} s to settle (bound ${record.settleBoundSeconds} s), ${record.seconds.total} s in all`,
    `  bots: ${record.bots.created} created (${record.bots.failedCreates} creates unanswered), ${record.bots.actionsTaken} cancels/leaves`,
    ...Object.entries(record.bots.byOutcome)
      .sort(([, a], [, b]) => b - a)
      .map(([outcome, count]) => `    ${String(count).padStart(5)}  ${outcome}`),
    `  faults (worst recovery: API answering / next container placed, ms):`,
    ...Object.entries(record.faults.byKind).map(
      ([kind, { count, failed, worstRecovery }]) =>
        `    ${String(count).padStart(5)}  ${kind.padEnd(22)} ${worstRecovery.api ?? '-'} / ${worstRecovery.placement ?? '-'}${failed ? `  (${failed} failed to run)` : ''}`,
    ),
    `  api: ${record.api.answers} answers ${JSON.stringify(record.api.byStatus)}, ${record.api.unreachable} with no API up`,
    `  webhooks: ${record.webhooks.events} events, ${record.webhooks.deliveries} deliveries`,
    `  invariants:`,
    ...Object.entries(record.invariants).map(
      ([name, { violations }]) =>
        `    ${violations === 0 ? 'ok  ' : 'FAIL'} ${name}${violations ? `: ${violations}` : ''}`,
    ),
    `  record: ${file}${record.logs ? `\n  logs: ${record.logs}` : ''}`,
    record.violations === 0 ? 'PASS' : `FAIL: ${record.violations} violations (seed ${record.seed} replays the run)`,
  ];
  return lines.join('\n');
}
