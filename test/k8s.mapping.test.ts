import { V1Job, V1Pod } from '@kubernetes/client-node';
import { loadConfig } from '../src/config';
import { buildJob } from '../src/platforms/k8s/job-spec';
import { jobStatus } from '../src/platforms/k8s/job-status';
import { k8sError } from '../src/platforms/k8s/k8s-errors';

/** What Job, pod and event states mean to the fleet (the API server's own answers are in k8s.platform.test.ts). */
const job = (extra: Partial<V1Job['status']> & { suspend?: boolean; deleting?: boolean } = {}): V1Job => ({
  metadata: { name: 'mb-x-k8s-0', ...(extra.deleting ? { deletionTimestamp: new Date() } : {}) },
  spec: { suspend: extra.suspend ?? false, template: {} },
  status: { conditions: extra.conditions },
});
const pod = (status: V1Pod['status']): V1Pod => ({ metadata: { name: 'mb-x-k8s-0-abcde' }, status });

it('maps Job and pod states to starting, running and gone, with the reasons operators need', () => {
  expect(jobStatus(undefined, [])).toMatchObject({ state: 'gone' });
  expect(jobStatus(job({ suspend: true }), [])).toEqual({ state: 'starting', detail: 'suspended' });
  expect(jobStatus(job(), [])).toEqual({ state: 'starting', detail: 'Pending' });
  expect(
    jobStatus(job(), [], [{ reason: 'FailedCreate', message: 'exceeded quota: q', involvedObject: {}, metadata: {} }]),
  ).toEqual({ state: 'starting', detail: 'FailedCreate: exceeded quota: q' });
  expect(
    jobStatus(job(), [
      pod({
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'bot',
            image: 'i',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ErrImagePull', message: 'not found' } },
          },
        ],
      }),
    ]),
  ).toEqual({ state: 'starting', detail: 'ErrImagePull: not found' });
  expect(
    jobStatus(job(), [
      pod({
        phase: 'Pending',
        conditions: [
          { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes are available' },
        ],
      }),
    ]),
  ).toEqual({ state: 'starting', detail: 'Unschedulable: 0/1 nodes are available' });
  expect(jobStatus(job(), [pod({ phase: 'Running' })])).toEqual({ state: 'running' });
  expect(jobStatus(job({ deleting: true }), [pod({ phase: 'Running' })])).toEqual({
    state: 'running',
    detail: 'stopping',
  });
  const oom = pod({
    phase: 'Failed',
    containerStatuses: [
      {
        name: 'bot',
        image: 'i',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { terminated: { exitCode: 137, reason: 'OOMKilled' } },
      },
    ],
  });
  expect(
    jobStatus(
      job({
        conditions: [
          {
            type: 'Failed',
            status: 'True',
            reason: 'BackoffLimitExceeded',
            message: 'Job has reached the specified backoff limit',
          },
        ],
      }),
      [oom],
    ),
  ).toEqual({
    state: 'gone',
    detail:
      'Failed: BackoffLimitExceeded: Job has reached the specified backoff limit; pod mb-x-k8s-0-abcde: exit code 137 (OOMKilled)',
  });
  expect(
    jobStatus(job({ conditions: [{ type: 'FailureTarget', status: 'True', reason: 'DeadlineExceeded' }] }), []),
  ).toMatchObject({ state: 'gone', detail: 'FailureTarget: DeadlineExceeded' });
});

it('429, 5xx and network errors are transient; a quota refusal is full; other 4xx fail', () => {
  const api = (code: number, message: string) =>
    Object.assign(new Error('Unknown API Status Code!'), { code, body: JSON.stringify({ kind: 'Status', message }) });
  expect(k8sError('create Job', api(429, 'slow down'))).toMatchObject({
    transient: true,
    full: false,
    message: 'create Job: HTTP 429: slow down',
  });
  expect(k8sError('create Job', api(503, 'unavailable'))).toMatchObject({ transient: true, full: false });
  expect(k8sError('create Job', new Error('connect ECONNREFUSED'))).toMatchObject({ transient: true, full: false });
  expect(k8sError('create Job', api(403, 'jobs.batch is forbidden: exceeded quota: q'))).toMatchObject({
    transient: false,
    full: true,
  });
  expect(k8sError('create Job', api(403, 'forbidden: User cannot create'))).toMatchObject({
    transient: false,
    full: false,
  });
  expect(k8sError('create Job', api(422, 'Job.batch "x" is invalid'))).toMatchObject({ transient: false, full: false });
});

it.each([
  // the seed's example org, spelt as GitHub shows it: the Job's image is lowercase, as references must be
  [{ GHCR_ORG: 'Payme-Works' }, 'ghcr.io/payme-works/meeboter-zoom-bot:latest'],
  [{ GHCR_ORG: 'Payme-Works', K8S_IMAGE_TAG: 'v1.4.0' }, 'ghcr.io/payme-works/meeboter-zoom-bot:v1.4.0'],
  [
    { K8S_IMAGE_REGISTRY: 'registry.example:5000/team', GHCR_ORG: 'Payme-Works' },
    'registry.example:5000/team/meeboter-zoom-bot:latest',
  ],
])('a Job of a fleet configured with %j runs %s', (env, image) => {
  const config = loadConfig({ PLATFORM_PRIORITY: 'k8s', K8S_BOT_LIMIT: '5', ...env });
  const spec = {
    botId: 'b1',
    name: 'mb-b1-k8s',
    attempt: 0,
    meetingPlatform: 'zoom' as const,
    maxDurationMs: null,
    env: { BOT_ID: 'b1' },
  };
  const containers = buildJob(spec, config.k8s!, 'fleet-test', 60_000).spec!.template.spec!.containers;
  expect(containers.map((container) => container.image)).toEqual([image]);
});
