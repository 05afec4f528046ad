import { RequestHandler } from 'express';
import { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimitedError } from '../errors';
import { logger } from '../logger';
import { Caller } from './http';

/**
 * Client requests per API key per minute, counted in Redis so the limit holds across every API process
 * (rate-limiter-flexible, one atomic round trip). Over it: 429 with Retry-After. Bot routes and admin routes
 * are not limited (a heartbeat must never be refused for a client's burst). If Redis cannot count, the
 * request passes: whatever it needs from Redis then answers for itself.
 */
export function clientRateLimit(redis: Redis, prefix: string, perMinute: number): RequestHandler {
  if (perMinute === 0) return (_req, _res, next) => next();
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: `${prefix}:rate:api-key`,
    points: perMinute,
    duration: 60,
  });
  return (_req, res, next) => {
    const { keyId } = res.locals.caller as Caller;
    limiter
      .consume(keyId!)
      .then(() => next())
      .catch((outcome: unknown) => {
        if (outcome instanceof RateLimiterRes) {
          const seconds = Math.max(1, Math.ceil(outcome.msBeforeNext / 1000));
          return next(
            new RateLimitedError(
              `more than ${perMinute} requests a minute with this API key; retry in ${seconds} s`,
              seconds,
            ),
          );
        }
        logger.warn('rate limit not counted', { error: String(outcome) });
        next();
      });
  };
}
