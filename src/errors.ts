/**
 * One error hierarchy. Each error carries a stable string `code` and the HTTP `status` the API answers
 * with; the error middleware is the only place that turns them into `{error: {code, message, details}}`.
 */
export class AppError extends Error {
  readonly code: string = 'INTERNAL';
  readonly status: number = 500;
  constructor(
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  override readonly code = 'VALIDATION_FAILED';
  override readonly status = 400;
}

export class UnauthorizedError extends AppError {
  override readonly code = 'UNAUTHORIZED';
  override readonly status = 401;
}

export class NotFoundError extends AppError {
  override readonly code = 'NOT_FOUND';
  override readonly status = 404;
}

export class ConflictError extends AppError {
  override readonly code: string = 'CONFLICT';
  override readonly status = 409;
}

/** The bot lifecycle refused a transition (docs/lifecycle.md). */
export class TransitionError extends ConflictError {
  override readonly code = 'ILLEGAL_TRANSITION';
  constructor(
    readonly from: string,
    readonly to: string,
  ) {
    super(`cannot move a bot from ${from} to ${to}`, { from, to });
  }
}

export class IdempotencyConflictError extends ConflictError {
  override readonly code = 'IDEMPOTENCY_KEY_REUSED';
}

/** The bot has ended; bots asking for their config get 410. */
export class GoneError extends AppError {
  override readonly code = 'GONE';
  override readonly status = 410;
}

export class PayloadTooLargeError extends AppError {
  override readonly code = 'PAYLOAD_TOO_LARGE';
  override readonly status = 413;
}

/** A request body that is not JSON, on a route that reads one. */
export class UnsupportedMediaTypeError extends AppError {
  override readonly code = 'UNSUPPORTED_MEDIA_TYPE';
  override readonly status = 415;
}

/** Too many requests; `retryAfterSeconds` becomes the Retry-After header. */
export class RateLimitedError extends AppError {
  override readonly code = 'RATE_LIMITED';
  override readonly status = 429;
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message, { retryAfterSeconds });
  }
}

export class UnavailableError extends AppError {
  override readonly code = 'UNAVAILABLE';
  override readonly status = 503;
}
