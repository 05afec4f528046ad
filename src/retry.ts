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
