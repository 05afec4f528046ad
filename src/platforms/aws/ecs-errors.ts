import { Failure } from '@aws-sdk/client-ecs';
import { PlatformError } from '../platform';

/**
 * ECS answers, as PlatformErrors the fleet acts on. Nothing here is `transient`: throttling and 5xx are
 * retried by the SDK's own retry mode (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE), and an error that reaches us has
 * outlived those retries, so a second loop around them would only multiply the calls.
 */

/** RunTask `failures[]` reasons that mean "no room right now", not "broken". */
export function isCapacityFailure(reason: string | undefined): boolean {
  return !!reason && (/^RESOURCE:/.test(reason) || /capacity is unavailable/i.test(reason));
}

/** A RunTask that started nothing: `full` when every failure is about capacity. */
export function runTaskFailure(failures: Failure[], launch: string): PlatformError {
  if (failures.length === 0)
    return new PlatformError(`RunTask on ${launch}: no task and no failure in the answer`, false);
  const reasons = failures.map(
    (failure) => [failure.reason, failure.detail].filter(Boolean).join(': ') || 'unknown failure',
  );
  const full = failures.every((failure) => isCapacityFailure(failure.reason));
  return new PlatformError(`RunTask on ${launch}: ${reasons.join('; ')}`, false, full);
}

/**
 * An SDK error of `operation`. A Fargate quota ("You've reached the limit on the number of vCPUs you can
 * run concurrently", sent as a ThrottlingException) is the account being full, not the platform failing.
 */
export function ecsError(operation: string, error: unknown): PlatformError {
  if (error instanceof PlatformError) return error;
  const name = (error as { name?: string }).name ?? 'Error';
  const message = error instanceof Error ? error.message : String(error);
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const full = /reached the limit on the number of/i.test(message);
  return new PlatformError(`${operation}: ${name}${status ? ` (HTTP ${status})` : ''}: ${message}`, false, full);
}

/** StopTask of a task ECS no longer knows: already gone, which is what stopping wants. */
export function isTaskNotFound(error: unknown): boolean {
  const name = (error as { name?: string }).name;
  return name === 'InvalidParameterException' && /not found/i.test(error instanceof Error ? error.message : '');
}
