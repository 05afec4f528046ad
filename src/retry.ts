/**
 * Bounded retries with exponential backoff and full jitter, for calls to things we do not control
 * (platform APIs, webhook receivers). An error may carry `retryAfterMs` (from a 429's Retry-After).
 */
export interface RetryOptions {
  attempts: number;
  isRetryable: (error: unknown) => boolean;
  baseMs?: number;
  maxMs?: number;
}

export async function withRetries<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const base = options.baseMs ?? 200;
  const max = options.maxMs ?? 10_000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= options.attempts || !options.isRetryable(error)) throw error;
      const hinted = (error as { retryAfterMs?: number }).retryAfterMs;
      const delay = hinted ?? Math.random() * Math.min(max, base * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/**
 * `work`, or a rejection with `timeout` once `ms` passed without an answer: for a peer that may hang rather
 * than refuse (a stopped MongoDB keeps its connections open and never answers). The work itself goes on.
 */
export async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
