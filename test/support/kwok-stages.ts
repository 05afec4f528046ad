/**
 * kwok Stage objects for the fake node's pods (they replace kwok's default pod stages; node stages stay).
 * What happens to a pod is chosen by the test:
 * - by the image tag the fleet is configured with (K8S_IMAGE_TAG), for what happens before a pod runs: a tag
 *   containing `pull-fails` leaves the pod Pending with ImagePullBackOff; one containing `slow-pull` takes
 *   SLOW_PULL_MS to run; any other runs at once;
 *   a tag containing `start-fails-once` fails the pod of a bot's first start try before it runs (exit code 128,
 *   StartError), while the pods of its retries (deployment names ending `--<try>`) run;
 * - by a label the test puts on a Running pod, for how it ends: `kwok.test/outcome=succeed` (exit 0) or
 *   `fail` (exit 1); without it the pod runs until its Job is deleted, as a bot runs until it ends.
 */
// Long enough that a test sees the pull lock held before the pod runs, on a slow machine too.
export const SLOW_PULL_MS = 10000;
export const OUTCOME_LABEL = 'kwok.test/outcome';

const image = '.spec.containers[0].image';

const stage = (name: string, selector: string, next: string, delayMs = 0) => `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ${name}
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
${selector}
${delayMs ? `  delay:\n    durationMilliseconds: ${delayMs}\n` : ''}  next:
${next}`;

const notDeleted = `    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'`;
const expression = (key: string, operator: string, values?: string[]) =>
  `    - key: '${key}'\n      operator: '${operator}'${values ? `\n      values: [${values.map((v) => `'${v}'`).join(', ')}]` : ''}`;

/** Every container of the pod in one state (a YAML block under `state:`). */
const containerStatuses = (ready: boolean, state: string) => `      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: ${ready}
        restartCount: 0
        state:
${state}
      {{ end }}`;

const running = `    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
${containerStatuses(true, '          running:\n            startedAt: {{ $now | Quote }}')}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}`;

const terminated = (phase: string, exitCode: number, reason: string) => `    statusTemplate: |
      {{ $now := Now }}
${containerStatuses(false, `          terminated:\n            exitCode: ${exitCode}\n            finishedAt: {{ $now | Quote }}\n            reason: ${reason}\n            startedAt: {{ $now | Quote }}`)}
      phase: ${phase}`;

const pullFails = `    event:
      type: Warning
      reason: Failed
      message: 'Failed to pull image: not found'
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: PodScheduled
${containerStatuses(false, '          waiting:\n            reason: ImagePullBackOff\n            message: {{ printf "Back-off pulling image %q" .image | Quote }}')}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      phase: Pending`;

const unstarted = [notDeleted, expression('.spec.nodeName', 'Exists'), expression('.status.podIP', 'DoesNotExist')];
/** A pod of a bot's first start try, with an image whose first try fails (the retries' names end `--<try>`). */
const firstTryFails = `(${image} | test("start-fails-once")) and (.metadata.labels["meeboter.io/deployment"] | test("--[0-9]+$") | not)`;

export const STAGES = [
  stage(
    'pod-pull-fails',
    [
      ...unstarted,
      expression('.status.containerStatuses', 'DoesNotExist'),
      expression(`${image} | test("pull-fails")`, 'In', ['true']),
    ].join('\n'),
    pullFails,
  ),
  stage(
    'pod-start-fails',
    [
      ...unstarted,
      expression('.status.containerStatuses', 'DoesNotExist'),
      expression(firstTryFails, 'In', ['true']),
    ].join('\n'),
    terminated('Failed', 128, 'StartError'),
  ),
  stage(
    'pod-ready',
    [
      ...unstarted,
      expression(`${image} | test("pull-fails|slow-pull")`, 'In', ['false']),
      expression(firstTryFails, 'In', ['false']),
    ].join('\n'),
    running,
  ),
  stage(
    'pod-ready-slow',
    [...unstarted, expression(`${image} | test("slow-pull")`, 'In', ['true'])].join('\n'),
    running,
    SLOW_PULL_MS,
  ),
  stage(
    'pod-succeed',
    [
      notDeleted,
      expression('.status.phase', 'In', ['Running']),
      expression(`.metadata.labels["${OUTCOME_LABEL}"]`, 'In', ['succeed']),
    ].join('\n'),
    terminated('Succeeded', 0, 'Completed'),
  ),
  stage(
    'pod-fail',
    [
      notDeleted,
      expression('.status.phase', 'In', ['Running']),
      expression(`.metadata.labels["${OUTCOME_LABEL}"]`, 'In', ['fail']),
    ].join('\n'),
    terminated('Failed', 1, 'Error'),
  ),
  stage(
    'pod-delete',
    expression('.metadata.deletionTimestamp', 'Exists'),
    '    finalizers:\n      empty: true\n    delete: true',
  ),
].join('\n---\n');
