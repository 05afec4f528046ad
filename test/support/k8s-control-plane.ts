import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/peers';
import { STAGES } from './kwok-stages';

/**
 * A real Kubernetes control plane on free loopback ports, the k8s platform's test peer: etcd, kube-apiserver
 * (TLS, RBAC), kube-controller-manager (the real Job, garbage-collector and TTL-after-finished controllers),
 * kube-scheduler, and kwok faking one node's kubelet with the stages of kwok-stages.ts. The binaries are built
 * by scripts/provision-k8s.sh; without them this fails, loudly, rather than skip.
 */
export const K8S_BIN =
  process.env.MEEBOTER_K8S_BIN ??
  path.join(
    process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'),
    'meeboter/k8s-v1.34.4-etcd-v3.6.16-kwok-v0.7.0/bin',
  );
const BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok', 'kubectl'];
export const NODE_NAME = 'kwok-node-0';

export interface ControlPlane {
  server: string;
  dir: string;
  /** Kubeconfig of a cluster admin (system:masters). */
  adminKubeconfig: string;
  /** Runs kubectl (a client we did not write) with the given kubeconfig; returns its stdout. */
  kubectl(args: string[], kubeconfig?: string, input?: string): string;
  /** A kubeconfig for a bearer token (a ServiceAccount's), written into the plane's directory. */
  tokenKubeconfig(name: string, token: string): string;
  /**
   * Kills kube-apiserver (SIGKILL); the function returned starts it again on the same etcd and port and
   * resolves once it is ready. The other components reconnect by themselves.
   */
  killApiServer(): Promise<() => Promise<void>>;
  stop(): Promise<void>;
}

export function assertBinaries(): void {
  const missing = BINARIES.filter((name) => !existsSync(path.join(K8S_BIN, name)));
  if (missing.length) {
    throw new Error(`Kubernetes test binaries missing in ${K8S_BIN} (${missing.join(', ')}): run scripts/provision.sh`);
  }
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A key and a certificate signed by the plane's CA. */
function certificate(dir: string, name: string, subject: string, extensions: string): void {
  writeFileSync(path.join(dir, `${name}.ext`), extensions);
  openssl(
    dir,
    'req',
    '-new',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-subj',
    subject,
    '-out',
    `${name}.csr`,
  );
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '3',
    '-out',
    `${name}.crt`,
    '-extfile',
    `${name}.ext`,
  );
}

function makePki(dir: string): void {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '3',
    '-subj',
    '/CN=meeboter-test-ca',
  );
  const client = 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n';
  certificate(
    dir,
    'apiserver',
    '/CN=kube-apiserver',
    'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' +
      'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n',
  );
  certificate(dir, 'admin', '/O=system:masters/CN=meeboter-test-admin', client);
  certificate(dir, 'controller-manager', '/CN=system:kube-controller-manager', client);
  certificate(dir, 'scheduler', '/CN=system:kube-scheduler', client);
  openssl(dir, 'genrsa', '-out', 'sa.key', '2048');
  openssl(dir, 'rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');
}

function kubeconfig(dir: string, name: string, server: string, user: string): string {
  const file = path.join(dir, `${name}.kubeconfig`);
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: ${server}
    certificate-authority: ${path.join(dir, 'ca.crt')}
users:
- name: ${name}
  user:
${user}
contexts:
- name: ${name}
  context: {cluster: test, user: ${name}}
current-context: ${name}
`,
  );
  return file;
}

const certUser = (dir: string, name: string) =>
  `    client-certificate: ${path.join(dir, `${name}.crt`)}\n    client-key: ${path.join(dir, `${name}.key`)}`;

/** GET on the API server with the admin's certificate: its status code, or 0 while it does not answer. */
function probe(dir: string, port: number, route: string): Promise<number> {
  return new Promise((resolve) => {
    const request = https.get(
      {
        host: '127.0.0.1',
        port,
        path: route,
        timeout: 2000,
        ca: readFileSync(path.join(dir, 'ca.crt')),
        cert: readFileSync(path.join(dir, 'admin.crt')),
        key: readFileSync(path.join(dir, 'admin.key')),
      },
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    );
    request.on('error', () => resolve(0));
    request.on('timeout', () => request.destroy());
  });
}

async function until(what: string, check: () => Promise<boolean> | boolean, processes: Running[], timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    const dead = processes.find((p) => p.child.exitCode !== null);
    if (dead)
      throw new Error(`${dead.name} exited (${dead.child.exitCode}) while waiting for ${what}: ${tail(dead.log)}`);
    if (Date.now() > deadline) throw new Error(`control plane: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const tail = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').slice(-3000) : '');

interface Running {
  name: string;
  child: ChildProcess;
  log: string;
}

export async function startControlPlane(): Promise<ControlPlane> {
  assertBinaries();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-k8s-'));
  makePki(dir);
  const [etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kwokPort] = await Promise.all(
    [1, 2, 3, 4, 5, 6].map(() => freePort()),
  );
  const server = `https://127.0.0.1:${apiPort}`;
  const admin = kubeconfig(dir, 'admin', server, certUser(dir, 'admin'));
  const kcm = kubeconfig(dir, 'controller-manager', server, certUser(dir, 'controller-manager'));
  const scheduler = kubeconfig(dir, 'scheduler', server, certUser(dir, 'scheduler'));
  writeFileSync(path.join(dir, 'stages.yaml'), STAGES);
  const processes: Running[] = [];
  const run = (name: string, args: string[]) => {
    const log = path.join(dir, `${name}.log`);
    const fd = openSync(log, 'a');
    const child = spawn(path.join(K8S_BIN, name), args, { stdio: ['ignore', fd, fd], cwd: dir });
    const restarted = processes.findIndex((running) => running.name === name);
    if (restarted >= 0) processes[restarted] = { name, child, log };
    else processes.push({ name, child, log });
  };
  const file = (name: string) => path.join(dir, name);
  const apiServerArgs = [
    `--etcd-servers=http://127.0.0.1:${etcdClient}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--tls-cert-file=${file('apiserver.crt')}`,
    `--tls-private-key-file=${file('apiserver.key')}`,
    `--client-ca-file=${file('ca.crt')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${file('sa.pub')}`,
    `--service-account-signing-key-file=${file('sa.key')}`,
    '--authorization-mode=RBAC',
    '--service-cluster-ip-range=10.96.0.0/16',
    '--endpoint-reconciler-type=none',
  ];
  const apiServerReady = async () => (await probe(dir, apiPort, '/readyz')) === 200;
  const stop = async () => {
    for (const { child } of [...processes].reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      });
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    run('etcd', [
      `--data-dir=${file('etcd-data')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    run('kube-apiserver', apiServerArgs);
    await until('the API server to be ready', apiServerReady, processes);
    run('kube-controller-manager', [
      `--kubeconfig=${kcm}`,
      `--authentication-kubeconfig=${kcm}`,
      `--authorization-kubeconfig=${kcm}`,
      '--controllers=*',
      '--use-service-account-credentials',
      `--service-account-private-key-file=${file('sa.key')}`,
      `--root-ca-file=${file('ca.crt')}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${kcmPort}`,
    ]);
    run('kube-scheduler', [
      `--kubeconfig=${scheduler}`,
      `--authentication-kubeconfig=${scheduler}`,
      `--authorization-kubeconfig=${scheduler}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
    ]);
    run('kwok', [
      `--kubeconfig=${admin}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--node-ip=127.0.0.1',
      `--node-port=${kwokPort}`,
      `--server-address=127.0.0.1:${kwokPort}`,
      `--tls-cert-file=${file('apiserver.crt')}`,
      `--tls-private-key-file=${file('apiserver.key')}`,
      `--config=${file('stages.yaml')}`,
    ]);
    const kubectl = (args: string[], config = admin, input?: string) =>
      execFileSync(path.join(K8S_BIN, 'kubectl'), [`--kubeconfig=${config}`, ...args], {
        input,
        encoding: 'utf8',
        stdio: 'pipe',
      });
    kubectl(
      ['apply', '-f', '-'],
      admin,
      `apiVersion: v1
kind: Node
metadata:
  name: ${NODE_NAME}
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: ${NODE_NAME}, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
`,
    );
    await until(
      'the fake node to be Ready',
      () => {
        const ready = kubectl([
          'get',
          'node',
          NODE_NAME,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ]);
        return ready.trim() === 'True';
      },
      processes,
    );
    return {
      server,
      dir,
      adminKubeconfig: admin,
      kubectl,
      tokenKubeconfig: (name, token) => kubeconfig(dir, name, server, `    token: ${token}`),
      async killApiServer() {
        const { child } = processes.find((running) => running.name === 'kube-apiserver')!;
        await new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        });
        return async () => {
          run('kube-apiserver', apiServerArgs);
          await until('the API server to be ready again', apiServerReady, processes);
        };
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
