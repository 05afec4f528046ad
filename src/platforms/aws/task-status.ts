import { Task } from '@aws-sdk/client-ecs';
import { ContainerStatus } from '../platform';

/**
 * What an ECS task's state means to the fleet, as a pure function of the DescribeTasks answer.
 *
 * lastStatus goes PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING
 * → STOPPED. Only STOPPED (or DELETED) is gone: until then the task holds its capacity. A task on its way
 * down counts as running if it ever ran (`startedAt`), and as starting if it never did, so a task that fails
 * to start (an image that cannot be pulled) is seen as gone before it ran rather than as a running bot.
 */
export function taskStatus(task: Task | undefined): ContainerStatus {
  if (!task) return { state: 'gone', detail: 'ECS does not know the task (MISSING)' };
  const last = task.lastStatus ?? 'PROVISIONING';
  if (last === 'STOPPED' || last === 'DELETED') return { state: 'gone', detail: stopDetail(task) };
  const stopping = task.desiredStatus === 'STOPPED' || STOPPING.includes(last);
  const detail = stopping ? `${last}, stopping${task.stoppedReason ? `: ${task.stoppedReason}` : ''}` : last;
  if (last === 'RUNNING') return stopping ? { state: 'running', detail } : { state: 'running' };
  if (STOPPING.includes(last) && task.startedAt) return { state: 'running', detail };
  return { state: 'starting', detail };
}

const STOPPING = ['DEACTIVATING', 'STOPPING', 'DEPROVISIONING'];

/**
 * "SpotInterruption: Your Spot Task was interrupted.; container zoom-bot exit code 137 (OutOfMemoryError)":
 * the task's stopCode and stoppedReason, then each container's exit code and reason.
 */
export function stopDetail(task: Task): string {
  const parts = [[task.stopCode, task.stoppedReason].filter(Boolean).join(': ')];
  for (const container of task.containers ?? []) {
    const code = container.exitCode === undefined ? '' : ` exit code ${container.exitCode}`;
    const reason = container.reason ? ` (${container.reason})` : '';
    if (code || reason) parts.push(`container ${container.name ?? '?'}${code}${reason}`);
  }
  return parts.filter(Boolean).join('; ') || 'STOPPED';
}

/** Tags every task of ours carries: the fleet it belongs to and the bot it runs. */
export const FLEET_TAG = 'meeboter:fleet';
export const BOT_TAG = 'meeboter:bot';

export function tagValue(task: Task, key: string): string | undefined {
  return task.tags?.find((tag) => tag.key === key)?.value;
}
