import { PlatformError } from '../platform';

/**
 * Kubernetes API answers as PlatformErrors. @kubernetes/client-node has no retry of its own, so 429, 5xx
 * and network errors are `transient` and the fleet retries them (src/retry.ts); a quota refusal is `full`.
 * In 1.x an ApiException carries the HTTP status in `code` and the raw Status JSON in `body` (its message
 * can be just "Unknown API Status Code!").
 */
export function statusCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export function k8sError(operation: string, error: unknown): PlatformError {
  if (error instanceof PlatformError) return error;
  const code = statusCode(error);
  // The request timeout's abort (k8s.platform.ts): the client's fetch reports it as a bare AbortError.
  const message = (error as { name?: unknown }).name === 'AbortError' ? 'no answer within the request timeout' : statusMessage(error);
  const transient = code === undefined || code === 429 || code >= 500;
  const full = code === 403 && /exceeded quota/i.test(message);
  return new PlatformError(`${operation}: ${code ? `HTTP ${code}: ` : ''}${message}`, transient && !full, full);
}

function statusMessage(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      const status = JSON.parse(body) as { message?: string; reason?: string };
      if (status.message) return status.message;
    } catch {
      // not a Status: fall through to the error's own message
    }
  }
  return error instanceof Error ? error.message : String(error);
}
