import { logger } from './logger';

/**
 * Closers run last-in first-out: what was opened last (the HTTP server, the workers) closes first, the
 * connections they use close last. `close()` caches its promise, so concurrent callers wait for one run.
 */
export interface Shutdown {
  add(name: string, closer: () => Promise<unknown> | unknown): void;
  close(): Promise<void>;
}

export function createShutdown(): Shutdown {
  const closers: Array<{ name: string; closer: () => Promise<unknown> | unknown }> = [];
  let closing: Promise<void> | undefined;
  return {
    add: (name, closer) => closers.push({ name, closer }),
    close() {
      closing ??= (async () => {
        for (const { name, closer } of closers.reverse()) {
          try {
            const started = Date.now();
            await closer();
            logger.debug('closed', { what: name, ms: Date.now() - started });
          } catch (error) {
            logger.warn('error while closing', { what: name, error: String(error) });
          }
        }
      })();
      return closing;
    },
  };
}

/** Graceful on the first SIGTERM/SIGINT; a second signal exits at once (PRODUCT.md section 2). */
export function installSignalHandlers(shutdown: Shutdown, exit: (code: number) => void = process.exit): void {
  let received = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    received++;
    if (received > 1) {
      logger.warn('second signal, exiting now', { signal });
      return exit(130);
    }
    logger.info('shutting down gracefully', { signal });
    shutdown.close().then(() => exit(0), () => exit(1));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
