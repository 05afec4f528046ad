import { Task } from '@aws-sdk/client-ecs';
import { ecsError, isCapacityFailure, isTaskNotFound, runTaskFailure } from '../src/platforms/aws/ecs-errors';
import { taskStatus } from '../src/platforms/aws/task-status';

/** The aws adapter's pure mappings, as tables: ECS task → ContainerStatus, ECS failures and errors → PlatformError. */
const started = new Date();

it.each<[string, Partial<Task> | undefined, { state: string; detail?: string }]>([
  ['unknown to ECS', undefined, { state: 'gone', detail: 'ECS does not know the task (MISSING)' }],
  [
    'PROVISIONING',
    { lastStatus: 'PROVISIONING', desiredStatus: 'RUNNING' },
    { state: 'starting', detail: 'PROVISIONING' },
  ],
  ['PENDING', { lastStatus: 'PENDING', desiredStatus: 'RUNNING' }, { state: 'starting', detail: 'PENDING' }],
  ['ACTIVATING', { lastStatus: 'ACTIVATING', desiredStatus: 'RUNNING' }, { state: 'starting', detail: 'ACTIVATING' }],
  ['RUNNING', { lastStatus: 'RUNNING', desiredStatus: 'RUNNING' }, { state: 'running' }],
  [
    'RUNNING, asked to stop',
    { lastStatus: 'RUNNING', desiredStatus: 'STOPPED', stoppedReason: 'bye' },
    { state: 'running', detail: 'RUNNING, stopping: bye' },
  ],
  [
    'DEACTIVATING after it ran',
    { lastStatus: 'DEACTIVATING', desiredStatus: 'STOPPED', startedAt: started },
    { state: 'running', detail: 'DEACTIVATING, stopping' },
  ],
  [
    'DEPROVISIONING after it ran',
    { lastStatus: 'DEPROVISIONING', desiredStatus: 'STOPPED', startedAt: started },
    { state: 'running', detail: 'DEPROVISIONING, stopping' },
  ],
  [
    'DEPROVISIONING, never ran',
    { lastStatus: 'DEPROVISIONING', desiredStatus: 'STOPPED', stoppedReason: 'CannotPullContainerError' },
    { state: 'starting', detail: 'DEPROVISIONING, stopping: CannotPullContainerError' },
  ],
  [
    'STOPPED by a Spot interruption',
    {
      lastStatus: 'STOPPED',
      stopCode: 'SpotInterruption',
      stoppedReason: 'Your Spot Task was interrupted.',
      containers: [{ name: 'zoom-bot', exitCode: 143 }],
    },
    { state: 'gone', detail: 'SpotInterruption: Your Spot Task was interrupted.; container zoom-bot exit code 143' },
  ],
  [
    'STOPPED, failed to start',
    {
      lastStatus: 'STOPPED',
      stopCode: 'TaskFailedToStart',
      stoppedReason: 'CannotPullContainerError: pull access denied',
      containers: [{ name: 'zoom-bot', reason: 'CannotPullContainerError' }],
    },
    {
      state: 'gone',
      detail:
        'TaskFailedToStart: CannotPullContainerError: pull access denied; container zoom-bot (CannotPullContainerError)',
    },
  ],
  [
    'STOPPED, exit 0',
    { lastStatus: 'STOPPED', stopCode: 'EssentialContainerExited', containers: [{ name: 'b', exitCode: 0 }] },
    { state: 'gone', detail: 'EssentialContainerExited; container b exit code 0' },
  ],
  ['STOPPED, nothing said', { lastStatus: 'STOPPED' }, { state: 'gone', detail: 'STOPPED' }],
])('task %s → %j', (_label, task, expected) => {
  expect(taskStatus(task)).toEqual(expected);
});

it.each<[string[], boolean]>([
  [['RESOURCE:MEMORY'], true],
  [['RESOURCE:CPU', 'RESOURCE:ENI'], true],
  [['Capacity is unavailable at this time. Please try again later or in a different availability zone'], true],
  [['RESOURCE:MEMORY', 'ATTRIBUTE'], false],
  [['MISSING'], false],
  [['AGENT'], false],
])('RunTask failures %j → full %s', (reasons, full) => {
  const error = runTaskFailure(
    reasons.map((reason) => ({ reason })),
    'FARGATE_SPOT',
  );
  expect(error).toMatchObject({ full, transient: false });
  for (const reason of reasons) expect(error.message).toContain(reason);
  expect(isCapacityFailure(reasons[0])).toBe(reasons[0].startsWith('RESOURCE') || reasons[0].startsWith('Capacity'));
});

it('a RunTask answer with neither a task nor a failure is a failure', () => {
  expect(runTaskFailure([], 'FARGATE')).toMatchObject({
    full: false,
    transient: false,
    message: 'RunTask on FARGATE: no task and no failure in the answer',
  });
});

const sdkError = (name: string, message: string, status: number) =>
  Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });

it.each<[Error, { full: boolean; message: string }]>([
  [
    sdkError('ThrottlingException', 'Rate exceeded', 400),
    { full: false, message: 'RunTask: ThrottlingException (HTTP 400): Rate exceeded' },
  ],
  [
    sdkError('ThrottlingException', "You've reached the limit on the number of vCPUs you can run concurrently", 400),
    {
      full: true,
      message:
        "RunTask: ThrottlingException (HTTP 400): You've reached the limit on the number of vCPUs you can run concurrently",
    },
  ],
  [
    sdkError('ServerException', 'internal', 500),
    { full: false, message: 'RunTask: ServerException (HTTP 500): internal' },
  ],
  [
    sdkError('AccessDeniedException', 'not authorized to perform: ecs:RunTask', 400),
    { full: false, message: 'RunTask: AccessDeniedException (HTTP 400): not authorized to perform: ecs:RunTask' },
  ],
])('SDK error %s → never transient (the SDK already retried)', (error, expected) => {
  expect(ecsError('RunTask', error)).toMatchObject({ transient: false, ...expected });
});

it('StopTask of a task ECS does not know counts as stopped', () => {
  expect(isTaskNotFound(sdkError('InvalidParameterException', 'The referenced task was not found.', 400))).toBe(true);
  expect(isTaskNotFound(sdkError('InvalidParameterException', 'Cluster is required', 400))).toBe(false);
  expect(isTaskNotFound(sdkError('ServerException', 'not found', 500))).toBe(false);
});
