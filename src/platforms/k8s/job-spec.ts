import { V1Job, V1Secret } from '@kubernetes/client-node';
import { KubernetesSettings } from '../../config';
import { botRepository } from '../bot-image';
import { DeploySpec } from '../platform';

/**
 * The Job and Secret of one bot attempt, as pure functions of the deploy spec and the settings.
 *
 * The Job is created suspended: its pod is made only once the Secret it reads exists (the Secret is owned
 * by the Job, so it needs the Job's uid, and the garbage collector deletes it with the Job).
 */
export const LABELS = {
  app: 'app',
  fleet: 'meeboter.io/fleet',
  bot: 'meeboter.io/bot-id',
  deployment: 'meeboter.io/deployment',
  meetingPlatform: 'meeboter.io/meeting-platform',
  attempt: 'meeboter.io/attempt',
} as const;
export const APP = 'meeboter-bot';
/** Set by the Job controller on its pods. */
export const JOB_NAME_LABEL = 'batch.kubernetes.io/job-name';

/** Container env that never appears as a plain value in a pod spec: it reaches the bot through the Secret. */
export const SECRET_ENV = ['MILO_AUTH_TOKEN', 'S3_SECRET_KEY'];

/** A finished Job (and its pods and Secret) is deleted this long after it ended. */
export const TTL_AFTER_FINISHED_S = 300;
/** A bot without a maximum duration still gets one: the longest the API accepts. */
const DEFAULT_MAX_DURATION_MS = 24 * 3600 * 1000;
/** Beyond the bot's maximum duration: the time to start (start timeout) and to leave the call. */
const DEADLINE_MARGIN_S = 600;

/** `mb-<botId>-<platform>-<attempt>`: a retry of the same attempt gets 409 and adopts; a later attempt is new. */
export function jobName(spec: DeploySpec): string {
  return `${spec.name}-${spec.attempt}`;
}

export function imageOf(settings: KubernetesSettings, meetingPlatform: string): string {
  return `${botRepository(settings.imageRegistry, meetingPlatform)}:${settings.imageTag}`;
}

export function fleetSelector(fleetId: string, extra: Record<string, string> = {}): string {
  return Object.entries({ [LABELS.app]: APP, [LABELS.fleet]: fleetId, ...extra })
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
}

export function buildJob(
  spec: DeploySpec,
  settings: KubernetesSettings,
  fleetId: string,
  startTimeoutMs: number,
): V1Job {
  const name = jobName(spec);
  const labels = {
    [LABELS.app]: APP,
    [LABELS.fleet]: fleetId,
    [LABELS.bot]: spec.botId,
    [LABELS.deployment]: spec.name,
    [LABELS.meetingPlatform]: spec.meetingPlatform,
    [LABELS.attempt]: String(spec.attempt),
  };
  const maxDurationMs = spec.maxDurationMs ?? DEFAULT_MAX_DURATION_MS;
  const env = Object.entries(spec.env).map(([key, value]) =>
    SECRET_ENV.includes(key) ? { name: key, valueFrom: { secretKeyRef: { name, key } } } : { name: key, value },
  );
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, labels },
    spec: {
      suspend: true,
      backoffLimit: 0,
      ttlSecondsAfterFinished: TTL_AFTER_FINISHED_S,
      activeDeadlineSeconds: Math.ceil((maxDurationMs + startTimeoutMs) / 1000) + DEADLINE_MARGIN_S,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          // Bots never call the Kubernetes API.
          automountServiceAccountToken: false,
          imagePullSecrets: [{ name: settings.imagePullSecret }],
          containers: [
            {
              name: 'bot',
              image: imageOf(settings, spec.meetingPlatform),
              env,
              resources: {
                requests: { cpu: settings.cpuRequest, memory: settings.memoryRequest },
                limits: { cpu: settings.cpuLimit, memory: settings.memoryLimit },
              },
              // Chromium needs more shared memory than the default 64 MB.
              volumeMounts: [{ name: 'dshm', mountPath: '/dev/shm' }],
            },
          ],
          volumes: [{ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: '512Mi' } }],
        },
      },
    },
  };
}

export function buildSecret(job: V1Job, spec: DeploySpec): V1Secret {
  const stringData: Record<string, string> = {};
  for (const key of SECRET_ENV) if (spec.env[key] !== undefined) stringData[key] = spec.env[key];
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: job.metadata!.name,
      labels: job.metadata!.labels,
      ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: job.metadata!.name!, uid: job.metadata!.uid! }],
    },
    stringData,
  };
}
