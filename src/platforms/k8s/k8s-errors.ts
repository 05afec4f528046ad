import { PlatformError } from '../platform';

/**
 * Kubernetes API answers as PlatformErrors. @kubernetes/client-node has no retry of its own, so 429, 5xx
 * and network errors are `transient` and the fleet retries them (src/retry.ts); a quota refusal is `full`.
 * An ApiException carries the HTTP status in `code` and the raw Status JSON in `body` (its message
 * can be just "Unknown API Status Code!").
 */
export function statusCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export function k8sError(operation: string, error: unknown): PlatformError {
  if (error instanceof PlatformError) return error;
  // The request timeout's abort (k8s.platform.ts): the client's fetch rejects with the signal's reason, a
  // DOMException named TimeoutError (whose legacy numeric `code`, 23, is no HTTP status), or AbortError.
  if (['AbortError', 'TimeoutError'].includes(String((error as { name?: unknown }).name))) {
    return new PlatformError(`${operation}: no answer within the request timeout`, true, false);
  }
  const code = statusCode(error);
  const message = statusMessage(error);
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
