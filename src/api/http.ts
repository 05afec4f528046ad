import express, { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  AppError,
  PayloadTooLargeError,
  RateLimitedError,
  UnauthorizedError,
  UnavailableError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../errors';
import { isRedisUnavailable } from '../connections';
import { logger } from '../logger';
import type { ApiContext } from './api-context';

/**
 * Handlers return `{status, body}` and never touch `res`; `route()` writes the answer and sends every error
 * to `errorHandler`, the one place that builds `{error: {code, message, details}}`. No stack ever leaves.
 */
export interface HandlerResult {
  status: number;
  body: unknown;
}

export interface Caller {
  owner?: string;
  /** The API key's id (see api-keys.service), for its rate limit. */
  keyId?: string;
  botId?: string;
}

export type Handler = (req: Request, ctx: ApiContext, caller: Caller) => Promise<HandlerResult>;

export function route(handler: Handler, ctx: ApiContext): RequestHandler {
  return (req, res, next) => {
    handler(req, ctx, (res.locals.caller ?? {}) as Caller)
      .then(({ status, body }) => res.status(status).json(body))
      .catch(next);
  };
}

export function errorHandler(error: unknown, req: Request, res: Response, _next: NextFunction): void {
  const known = toAppError(error);
  if (known instanceof RateLimitedError) res.setHeader('Retry-After', String(known.retryAfterSeconds));
  if (known.status >= 500) {
    logger.error('request failed', {
      method: req.method,
      path: req.path,
      requestId: req.id,
      error: error instanceof Error ? error : String(error),
    });
  }
  res.status(known.status).json({
    error: {
      code: known.code,
      message: known.status >= 500 ? safeMessage(known) : known.message,
      details: known.details ?? null,
      requestId: req.id ?? null,
    },
  });
}

function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const typed = error as { type?: string; status?: number; message?: string };
  if (typed?.type === 'entity.too.large') return new PayloadTooLargeError('request body is larger than 64 KB');
  if (typed?.type === 'entity.parse.failed') return new ValidationError('request body is not valid JSON');
  // an unsupported charset or Content-Encoding
  if (typed?.status === 415) return new UnsupportedMediaTypeError(typed.message ?? 'unsupported body encoding');
  if (typed?.status === 400) return new ValidationError(typed.message ?? 'bad request');
  // Redis away, failing over or short of replicas: the request may succeed once it is back
  if (isRedisUnavailable(error)) return new UnavailableError('Redis is unavailable; retry later');
  return new AppError('internal error');
}

function safeMessage(error: AppError): string {
  return error.code === 'INTERNAL' ? 'internal error' : error.message;
}

const JSON_TYPES = ['application/json', 'application/*+json'];

/**
 * For routes that read a body: a body that is not JSON is a 415, a JSON one is parsed (64 KB at most). An
 * empty body counts as none. Routes that take no body never read it, whatever its type.
 */
export function jsonBody(): RequestHandler[] {
  const hasBody = (req: Request) =>
    req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length']) > 0;
  return [
    (req, _res, next) => {
      if (hasBody(req) && !req.is(JSON_TYPES)) {
        return next(new UnsupportedMediaTypeError('the request body must be JSON (Content-Type: application/json)'));
      }
      next();
    },
    express.json({ limit: '64kb', type: JSON_TYPES }),
  ];
}

/** Reads a bearer token from `Authorization`, or the named fallback header. */
export function presentedToken(req: Request, fallbackHeader: string): string | undefined {
  const header = req.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice(7).trim();
  const fallback = req.headers[fallbackHeader];
  return typeof fallback === 'string' ? fallback.trim() : undefined;
}

export function clientAuth(ctx: ApiContext): RequestHandler {
  return (req, res, next) => {
    const key = presentedToken(req, 'x-api-key');
    if (!key) return next(new UnauthorizedError('an API key is required (Authorization: Bearer <key>)'));
    ctx.apiKeys
      .authenticate(key)
      .then((found) => {
        if (!found) return next(new UnauthorizedError('unknown API key'));
        res.locals.caller = { owner: found.owner, keyId: found.keyId } satisfies Caller;
        next();
      })
      .catch(next);
  };
}
