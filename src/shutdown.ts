import { logger } from './logger';

/**
 * Closers run last-in first-out: what was opened last (the HTTP server, the workers) closes first, the
 * connections they use close last. `close()` caches its promise, so concurrent callers wait for one run.
 */
export interface Shutdown {
  /** `closer` may return a promise: the next closer runs once it settles. */
  add(name: string, closer: () => unknown): void;
  close(): Promise<void>;
  /** The closers that have not finished yet, in the order they will run (for the deadline's log line). */
  unfinished(): string[];
}

export function createShutdown(): Shutdown {
  const closers: Array<{ name: string; closer: () => unknown }> = [];
  let closing: Promise<void> | undefined;
  const finished = new Set<string>();
  return {
    add: (name, closer) => closers.push({ name, closer }),
    unfinished: () =>
      [...closers]
        .reverse()
        .map(({ name }) => name)
        .filter((name) => !finished.has(name)),
    close() {
      closing ??= (async () => {
        for (const { name, closer } of [...closers].reverse()) {
          try {
            const started = Date.now();
            await closer();
            logger.debug('closed', { what: name, ms: Date.now() - started });
          } catch (error) {
            logger.warn('error while closing', { what: name, error: String(error) });
          }
          finished.add(name);
        }
      })();
      return closing;
    },
  };
}

/**
 * Graceful on the first SIGTERM/SIGINT; a second signal exits at once (the operator's way to skip the
 * wait). A graceful close that has not finished after `deadlineMs` (Redis or MongoDB unreachable, say) is
 * cut short: the process exits 1 naming what did not close. Nothing is lost by that: bots whose jobs were
 * not handed back are adopted by the next worker once their lock expires, and recovery rebuilds what Redis
 * did not keep.
 */
export function installSignalHandlers(
  shutdown: Shutdown,
  deadlineMs: number,
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  let received = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    received++;
    if (received > 1) {
      logger.warn('second signal, exiting now', { signal });
      return exit(130);
    }
    logger.info('shutting down gracefully', { signal, deadlineMs });
    const deadline = setTimeout(() => {
      logger.error('shutdown deadline passed, exiting now', { deadlineMs, unfinished: shutdown.unfinished() });
      exit(1);
    }, deadlineMs);
    deadline.unref();
    shutdown.close().then(
      () => exit(0),
      () => exit(1),
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
