import { CoreV1Event, V1Job, V1Pod } from '@kubernetes/client-node';
import { ContainerStatus } from '../platform';

/**
 * What a Job and its pods mean to the fleet, as a pure function of what the API server listed.
 *
 * A Job holds capacity while it has a pod that is not finished. Pending is `starting`, with the reason a
 * pod does not start (ImagePullBackOff, ErrImagePull, Unschedulable, ...) as detail, so the start timeout
 * can name it. A Job with no pod yet is starting, unless the API server refused its pod (FailedCreate).
 */
export function jobStatus(job: V1Job | undefined, pods: V1Pod[], events: CoreV1Event[] = []): ContainerStatus {
  if (!job)
    return { state: 'gone', detail: 'Kubernetes does not know the Job (deleted, or expired after it finished)' };
  const live = pods.filter((pod) => pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed');
  const finished = (job.status?.conditions ?? []).find((c) => c.status === 'True' && END_CONDITIONS.includes(c.type));
  const running = live.find((pod) => pod.status?.phase === 'Running' || pod.status?.phase === 'Unknown');
  if (running)
    return job.metadata?.deletionTimestamp || finished
      ? { state: 'running', detail: 'stopping' }
      : { state: 'running' };
  if (live.length) return { state: 'starting', detail: pendingDetail(live[0]) };
  if (finished || job.metadata?.deletionTimestamp || pods.length) {
    return {
      state: 'gone',
      detail: [conditionDetail(job), ...pods.map(podEndDetail)].filter(Boolean).join('; ') || 'ended',
    };
  }
  if (job.spec?.suspend) return { state: 'starting', detail: 'suspended' };
  const refused = createFailure(events);
  return { state: 'starting', detail: refused ? `FailedCreate: ${refused}` : 'Pending' };
}

/** "ImagePullBackOff: Back-off pulling image ..." or "Unschedulable: 0/1 nodes are available: ...". */
function pendingDetail(pod: V1Pod): string {
  for (const container of pod.status?.containerStatuses ?? []) {
    const waiting = container.state?.waiting;
    if (waiting?.reason && waiting.reason !== 'ContainerCreating') {
      return [waiting.reason, waiting.message].filter(Boolean).join(': ');
    }
  }
  const unscheduled = (pod.status?.conditions ?? []).find((c) => c.type === 'PodScheduled' && c.status === 'False');
  if (unscheduled) return [unscheduled.reason ?? 'Unschedulable', unscheduled.message].filter(Boolean).join(': ');
  return 'Pending';
}

/** Newer clusters set FailureTarget / SuccessCriteriaMet first and Failed / Complete once the pods ended. */
const END_CONDITIONS = ['Failed', 'Complete', 'FailureTarget', 'SuccessCriteriaMet'];

function conditionDetail(job: V1Job): string {
  const conditions = (job.status?.conditions ?? []).filter((c) => c.status === 'True');
  const condition = END_CONDITIONS.map((type) => conditions.find((c) => c.type === type)).find(Boolean);
  if (condition) return [condition.type, condition.reason, condition.message].filter(Boolean).join(': ');
  return job.metadata?.deletionTimestamp ? 'Job deleted' : '';
}

/** "pod mb-...-k8s-0-x7k2p: exit code 137 (OOMKilled)". */
function podEndDetail(pod: V1Pod): string {
  const parts = (pod.status?.containerStatuses ?? []).map((container) => {
    const terminated = container.state?.terminated;
    if (!terminated) return '';
    return `exit code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ''}`;
  });
  const reason = pod.status?.reason ? `${pod.status.reason} ` : '';
  const text = `${reason}${parts.filter(Boolean).join(', ')}`.trim();
  return text ? `pod ${pod.metadata?.name}: ${text}` : '';
}

/** The newest FailedCreate message of the Job's events: the API server refused its pod. */
export function createFailure(events: CoreV1Event[]): string | undefined {
  const failed = events.filter((event) => event.reason === 'FailedCreate');
  failed.sort((a, b) => eventTime(b) - eventTime(a));
  return failed[0]?.message;
}

const eventTime = (event: CoreV1Event) =>
  new Date(event.lastTimestamp ?? event.eventTime ?? event.metadata?.creationTimestamp ?? 0).getTime();

/** The API server's quota refusal ("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"). */
export function isQuotaRefusal(message: string | undefined): boolean {
  return !!message && /exceeded quota/i.test(message);
}
