import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { configVariableNames, ConfigError, loadConfig } from '../src/config';
import { freePort } from '../src/peers';
import {
  cleanup,
  FleetProcess,
  peerUrls,
  spawnFleetProcess,
  testDatabaseUri,
  uniqueName,
  UntypedJson,
  waitFor,
} from './support/fleet';
import { K8sPeer, NAMESPACE, startK8sPeer } from './support/k8s';

/**
 * deploy/k8s/ as a real API server sees it (the k8s peer: kube-apiserver, controller-manager, scheduler,
 * kwok): every manifest passes a server-side dry run, `kubectl apply -k` brings the fleet's pods up, the
 * environment the manifests give each role is one the configuration accepts, and the probes ask what each
 * role serves with that environment.
 */
jest.setTimeout(300_000);

const DIR = path.resolve(__dirname, '../deploy/k8s');
const MANIFESTS = readdirSync(DIR)
  .filter((file) => file.endsWith('.yaml') && file !== 'kustomization.yaml')
  .sort();
/** Applied by hand, not by `kubectl apply -k`: the Secret is a template, the quota an example to size. */
const NOT_IN_KUSTOMIZATION = ['resource-quota.yaml', 'secret.example.yaml'];
/** Test values for the Secret's keys (the template's placeholders are refused on purpose). */
const TEST_SECRETS: Record<string, string> = {
  BOT_TOKEN_SECRET: 'manifest-test-secret-0123456789',
  WEBHOOK_SECRET: 'manifest-test-webhooks-0123456789',
  ADMIN_API_KEY: 'manifest-test-admin-0123456789',
};

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: UntypedJson };
  [key: string]: UntypedJson;
};

let peer: K8sPeer;
beforeAll(async () => {
  peer = await startK8sPeer();
}, 300_000);
afterAll(() => peer?.close());

const kubectl = (...args: string[]) => peer.plane.kubectl(args);
const source = (file: string) => (file === '-k' ? ['-k', DIR] : ['-f', path.join(DIR, file)]);
const objectsOf = (json: string): K8sObject[] => {
  const parsed = JSON.parse(json);
  return parsed.kind === 'List' ? parsed.items : [parsed];
};
/** kubectl's name of an object: `deployment.apps/meeboter-api`, `configmap/meeboter`. */
const kubectlName = (object: K8sObject) => {
  const group = object.apiVersion.includes('/') ? `.${object.apiVersion.split('/')[0]}` : '';
  return `${object.kind.toLowerCase()}${group}/${object.metadata.name}`;
};
const key = (object: K8sObject) => `${object.kind}/${object.metadata.name}`;

/** The objects of deploy/k8s as the API server returned them from the dry run of `kubectl apply -k`. */
let served: K8sObject[] = [];
let secretTemplate: K8sObject;
const find = (kind: string, name: string) => {
  const object = served.find((o) => o.kind === kind && o.metadata.name === name);
  if (!object) throw new Error(`${kind}/${name} is not in deploy/k8s`);
  return object;
};

it("every manifest, and the kustomization, passes the API server's server-side dry run, object by object", () => {
  const byFile = new Map<string, K8sObject[]>();
  for (const file of [...MANIFESTS, '-k']) {
    const printed = kubectl('apply', '--dry-run=server', ...source(file))
      .trim()
      .split('\n');
    const objects = objectsOf(kubectl('apply', '--dry-run=server', '-o', 'json', ...source(file)));
    byFile.set(file, objects);
    process.stdout.write(
      `dry run ${file === '-k' ? '-k deploy/k8s' : file}:\n${printed.map((line) => `  ${line}\n`).join('')}`,
    );
    expect(objects.length).toBeGreaterThan(0);
    // one line per object, each one the server accepted
    expect(printed).toHaveLength(objects.length);
    for (const object of objects) {
      expect(printed).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^${kubectlName(object).replace(/\./g, '\\.')} (created|configured|unchanged) \\(server dry run\\)$`,
          ),
        ),
      );
    }
  }
  // `kubectl apply -k` applies every manifest but the two applied by hand
  const expected = MANIFESTS.filter((file) => !NOT_IN_KUSTOMIZATION.includes(file)).flatMap((file) =>
    byFile.get(file)!.map(key),
  );
  served = byFile.get('-k')!;
  expect(served.map(key).sort()).toEqual(expected.sort());
  expect(MANIFESTS).toEqual(expect.arrayContaining(NOT_IN_KUSTOMIZATION));
  [secretTemplate] = byFile.get('secret.example.yaml')!;
  expect(secretTemplate.kind).toBe('Secret');
});

/** The pod template's only container, with the Deployment's pod spec. */
const podOf = (name: string) => {
  const spec = find('Deployment', name).spec.template.spec;
  expect(spec.containers).toHaveLength(1);
  return { pod: spec, container: spec.containers[0] };
};
const portNumber = (container: UntypedJson, port: string | number) =>
  typeof port === 'number' ? port : container.ports.find((p: { name: string }) => p.name === port)?.containerPort;
const envValue = (container: UntypedJson, name: string) =>
  container.env?.find((e: { name: string }) => e.name === name)?.value;

/** What each role's process gets from the manifests, as the kubelet builds it (ConfigMap, Secret, env). */
function roleEnv(deployment: string, secrets: Record<string, string> = {}): Record<string, string> {
  const { container } = podOf(deployment);
  const env: Record<string, string> = { KUBERNETES_SERVICE_HOST: '10.96.0.1' };
  for (const from of container.envFrom) {
    if (from.configMapRef) Object.assign(env, find('ConfigMap', from.configMapRef.name).data);
    else {
      expect(from.secretRef.name).toBe(secretTemplate.metadata.name);
      for (const [name, value] of Object.entries<string>(secretTemplate.data ?? {}))
        env[name] = Buffer.from(value, 'base64').toString('utf8');
    }
  }
  for (const entry of container.env ?? []) env[entry.name] = entry.value;
  return { ...env, ...secrets };
}

describe('the API and worker Deployments', () => {
  it("run the image's api and worker roles with probes on their declared ports, non-root, with resources", () => {
    const shutdownMs = Number(find('ConfigMap', 'meeboter').data.SHUTDOWN_TIMEOUT_MS);
    for (const [name, role] of [
      ['meeboter-api', 'api'],
      ['meeboter-worker', 'worker'],
    ]) {
      const { pod, container } = podOf(name);
      expect(container.args).toEqual(['node', 'dist/src/main.js', role]);
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
      expect(container.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      for (const kind of ['requests', 'limits'])
        expect(Object.keys(container.resources[kind]).sort()).toEqual(['cpu', 'memory']);
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const action = container[probe].httpGet ?? container[probe].tcpSocket;
        expect(portNumber(container, action.port)).toBeDefined();
      }
      const preStopSeconds = Number(container.lifecycle?.preStop?.exec?.command?.[1] ?? 0);
      expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(preStopSeconds * 1000 + shutdownMs);
      expect(pod.enableServiceLinks).toBe(false);
      // the root filesystem is read-only; /tmp is an emptyDir
      const tmp = container.volumeMounts.find((m: { mountPath: string }) => m.mountPath === '/tmp');
      expect(pod.volumes.find((v: { name: string }) => v.name === tmp?.name)?.emptyDir).toBeDefined();
    }

    const api = podOf('meeboter-api');
    expect(find('Deployment', 'meeboter-api').spec.replicas).toBeGreaterThanOrEqual(2);
    // a rollout adds a new pod before it removes an old one; a drain takes one at a time
    expect(find('Deployment', 'meeboter-api').spec.strategy.rollingUpdate).toMatchObject({
      maxUnavailable: 0,
      maxSurge: 1,
    });
    const budget = find('PodDisruptionBudget', 'meeboter-api').spec;
    expect(budget).toMatchObject({
      maxUnavailable: 1,
      selector: { matchLabels: find('Deployment', 'meeboter-api').spec.selector.matchLabels },
    });
    expect(api.container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(api.container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(portNumber(api.container, api.container.readinessProbe.httpGet.port)).toBe(
      Number(envValue(api.container, 'PORT')),
    );
    expect(api.pod.automountServiceAccountToken).toBe(false);
    const service = find('Service', 'meeboter-api');
    expect(service.spec.selector).toEqual(find('Deployment', 'meeboter-api').spec.template.metadata.labels);
    expect(portNumber(api.container, service.spec.ports[0].targetPort)).toBe(Number(envValue(api.container, 'PORT')));

    const worker = podOf('meeboter-worker');
    expect(worker.pod.serviceAccountName).toBe('meeboter');
    expect(find('ServiceAccount', 'meeboter').metadata.namespace).toBe(NAMESPACE);
    expect(worker.container.readinessProbe.httpGet.path).toBe('/metrics');
    expect(portNumber(worker.container, worker.container.readinessProbe.httpGet.port)).toBe(
      Number(envValue(worker.container, 'METRICS_PORT')),
    );
  });

  it("set only variables the configuration reads, and the environment of each role loads (the template's placeholders refused)", () => {
    const config = find('ConfigMap', 'meeboter').data as Record<string, string>;
    const known = new Set(configVariableNames(config.PLATFORM_PRIORITY.split(',')));
    const set = new Set([
      ...Object.keys(config),
      ...Object.keys(secretTemplate.data ?? {}),
      ...['meeboter-api', 'meeboter-worker'].flatMap((name) =>
        (podOf(name).container.env ?? []).map((e: { name: string }) => e.name),
      ),
    ]);
    process.stdout.write(`manifests set ${set.size} variables: ${[...set].sort().join(', ')}\n`);
    expect([...set].filter((name) => !known.has(name))).toEqual([]);
    for (const name of ['REDIS_URL', 'MONGODB_URI', 'BOT_TOKEN_SECRET', 'ADMIN_API_KEY'])
      expect(Object.keys(secretTemplate.data)).toContain(name);

    // applied unedited, the template stops every pod at startup, naming the placeholder
    expect(() => loadConfig(roleEnv('meeboter-worker'))).toThrow(
      new ConfigError('BOT_TOKEN_SECRET: length must be at least 16 characters long'),
    );

    const worker = loadConfig(roleEnv('meeboter-worker', TEST_SECRETS));
    expect(worker).toMatchObject({
      botTokenSecretGenerated: false,
      metricsPort: 9100,
      adminApiKey: TEST_SECRETS.ADMIN_API_KEY,
    });
    expect(worker.redisUrl).toMatch(/^redis:\/\//);
    expect(worker.mongodbUri).toMatch(/^mongodb:\/\//);
    expect(worker.webhooks.secret).toBe(TEST_SECRETS.WEBHOOK_SECRET);
    expect(worker.platforms.map((p) => p.name)).toEqual(['k8s']);
    expect(worker.k8s).toMatchObject({
      credentials: 'in-cluster',
      namespace: NAMESPACE,
      imagePullSecret: 'ghcr-secret',
    });
    expect(worker.shutdownTimeoutMs).toBe(25_000);
    // as shipped, no variable is misspelt or unused
    expect(worker.warnings).toEqual([]);

    const api = loadConfig(roleEnv('meeboter-api', TEST_SECRETS));
    expect(api).toMatchObject({
      botTokenSecretGenerated: false,
      port: 3000,
      botTokenSecret: worker.botTokenSecret,
      warnings: [],
    });
    // bots reach the API through its Service
    const service = find('Service', 'meeboter-api');
    expect(api.publicUrl).toBe(
      `http://${service.metadata.name}.${service.metadata.namespace}.svc:${service.spec.ports[0].port}`,
    );
  });
});

describe('the processes each Deployment starts, given its environment', () => {
  const urls = peerUrls();
  const mongodbUri = testDatabaseUri(urls.mongodbUri, uniqueName('meeboter_test_manifests'));
  const prefix = uniqueName('mbtest');
  const started: FleetProcess[] = [];
  afterAll(async () => {
    for (const fleet of started) await fleet.kill('SIGTERM');
    await cleanup({ redisUrl: urls.redisUrl, mongodbUri }, prefix);
  });

  /** The role's env with this test's Redis, database and free ports, and the ServiceAccount's kubeconfig. */
  async function testEnv(deployment: string) {
    const { container } = podOf(deployment);
    const env = roleEnv(deployment, {
      ...TEST_SECRETS,
      REDIS_URL: urls.redisUrl,
      MONGODB_URI: mongodbUri,
      REDIS_PREFIX: prefix,
    });
    // not in a pod here: the ServiceAccount's token comes in a kubeconfig instead of the pod's own files
    delete env.KUBERNETES_SERVICE_HOST;
    env.K8S_KUBECONFIG = peer.serviceAccountKubeconfig;
    // each declared port becomes a free one, and the probes follow it by name
    const ports = new Map<number, number>();
    for (const { containerPort } of container.ports) ports.set(containerPort, await freePort());
    for (const entry of container.env ?? [])
      if (ports.has(Number(entry.value))) env[entry.name] = String(ports.get(Number(entry.value)));
    const port = (probe: UntypedJson) => ports.get(portNumber(container, (probe.httpGet ?? probe.tcpSocket).port))!;
    return { env, container, port };
  }

  const answers = (port: number, route: string) =>
    fetch(`http://127.0.0.1:${port}${route}`).then(
      (res) => res.status,
      () => 0,
    );
  const accepts = (port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });

  it('the probes of the API and the worker ask what those processes serve', async () => {
    for (const deployment of ['meeboter-api', 'meeboter-worker']) {
      const { env, container, port } = await testEnv(deployment);
      const fleet = spawnFleetProcess(container.args[2], env);
      started.push(fleet);
      for (const name of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        const probe = container[name];
        const check = probe.httpGet
          ? async () => (await answers(port(probe), probe.httpGet.path)) === 200
          : () => accepts(port(probe));
        await waitFor(check, `${deployment}'s ${name} to pass (output: ${fleet.output().slice(-2000)})`, 60_000);
        process.stdout.write(
          `${deployment} ${name}: ${probe.httpGet ? `GET ${probe.httpGet.path}` : 'TCP'} on ${(probe.httpGet ?? probe.tcpSocket).port} passes\n`,
        );
      }
      expect(fleet.child.exitCode).toBeNull();
    }
  });

  it('a role without BOT_TOKEN_SECRET refuses to start, naming it', async () => {
    const { env } = await testEnv('meeboter-worker');
    delete env.BOT_TOKEN_SECRET;
    const fleet = spawnFleetProcess('worker', env);
    const code = await new Promise((resolve) => fleet.child.once('exit', resolve));
    expect(code).toBe(1);
    expect(fleet.output().trim()).toBe(
      'configuration error: BOT_TOKEN_SECRET: required when the API and workers run as separate processes',
    );
  });
});

it("`kubectl apply -k` with the Secret and the quota: the fleet's pods are admitted; only the workers get the ServiceAccount's token", async () => {
  const secret = {
    ...TEST_SECRETS,
    REDIS_URL: 'redis://redis.test:6379',
    MONGODB_URI: 'mongodb://mongodb.test:27017/meeboter',
  };
  kubectl(
    '-n',
    NAMESPACE,
    'create',
    'secret',
    'generic',
    'meeboter',
    ...Object.entries(secret).map(([k, v]) => `--from-literal=${k}=${v}`),
  );
  kubectl('apply', '-f', path.join(DIR, 'resource-quota.yaml'));
  process.stdout.write(
    `apply -k deploy/k8s:\n${kubectl('apply', ...source('-k'))
      .trim()
      .split('\n')
      .map((line) => `  ${line}\n`)
      .join('')}`,
  );
  for (const name of ['meeboter-api', 'meeboter-worker']) {
    process.stdout.write(
      `  ${kubectl('-n', NAMESPACE, 'rollout', 'status', `deployment/${name}`, '--timeout=120s').trim()}\n`,
    );
  }
  const pods = objectsOf(
    kubectl('-n', NAMESPACE, 'get', 'pods', '-l', 'app.kubernetes.io/name=meeboter', '-o', 'json'),
  );
  const byRole = (role: string) =>
    pods.filter(
      (pod) => pod.metadata.labels['app.kubernetes.io/component'] === role && !pod.metadata.deletionTimestamp,
    );
  const tokenMounted = (pod: K8sObject) =>
    pod.spec.containers[0].volumeMounts?.some(
      (m: { mountPath: string }) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount',
    ) ?? false;
  expect(byRole('api').length).toBe(find('Deployment', 'meeboter-api').spec.replicas);
  expect(byRole('worker').length).toBe(find('Deployment', 'meeboter-worker').spec.replicas);
  expect(byRole('api').map(tokenMounted)).toEqual(byRole('api').map(() => false));
  expect(byRole('worker').map((pod) => [pod.spec.serviceAccountName, tokenMounted(pod)])).toEqual(
    byRole('worker').map(() => ['meeboter', true]),
  );
  // the quota counts them: every pod carries requests and limits
  const quota = await waitFor(() => {
    const read = objectsOf(kubectl('-n', NAMESPACE, 'get', 'resourcequota', 'meeboter-quota', '-o', 'json'))[0];
    return Number(read.status?.used?.pods) === pods.length ? read : null;
  }, "the quota to count the fleet's pods");
  process.stdout.write(`  quota used: ${JSON.stringify(quota.status.used)}\n`);
  expect(Number(quota.status.used['requests.cpu'].replace(/m$/, ''))).toBeGreaterThan(0);
});
