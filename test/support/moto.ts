import { S3Client } from '@aws-sdk/client-s3';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { freePort, isPortOpen } from '../../src/peers';

/**
 * A moto server (PyPI `moto[server]`, installed into .venv-moto by scripts/provision.sh) on a free loopback
 * port, the AWS peer of the aws platform's tests. Its quirks are handled here, never in production code:
 * ECS tasks would otherwise "stop themselves" after a few DescribeTasks (the default `ecs::task` state
 * transition), so it is set to manual and tasks stay RUNNING until stopped; and AWS managed IAM policies
 * (AmazonECSTaskExecutionRolePolicy, which aws:setup attaches) exist only when moto is told to load them.
 */
export interface Moto {
  url: string;
  /** The server's process (a fault can pause it: it keeps its state in memory, so it is never restarted). */
  pid: number;
  stop(): Promise<void>;
}

/** In the repository root, seen from test/support/ (jest) or dist/test/support/ (compiled). */
const PYTHON = ['../../.venv-moto/bin/python', '../../../.venv-moto/bin/python']
  .map((candidate) => path.resolve(__dirname, candidate))
  .find((candidate) => existsSync(candidate));

export async function startMoto(): Promise<Moto> {
  if (!PYTHON) throw new Error('.venv-moto/bin/python not found: run scripts/provision.sh');
  const port = await freePort();
  let output = '';
  const child: ChildProcess = spawn(PYTHON, ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MOTO_IAM_LOAD_MANAGED_POLICIES: 'true' },
  });
  child.stdout!.on('data', () => undefined);
  child.stderr!.on('data', (chunk) => (output = (output + chunk).slice(-4000)));
  const deadline = Date.now() + 60_000;
  while (!(await isPortOpen(port))) {
    if (child.exitCode !== null) throw new Error(`moto server exited (${child.exitCode}): ${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto server did not listen on ${port} within 60 s: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const url = `http://127.0.0.1:${port}`;
  const response = await fetch(`${url}/moto-api/state-manager/set-transition`, {
    method: 'POST',
    body: JSON.stringify({ model_name: 'ecs::task', transition: { progression: 'manual', times: 1_000_000 } }),
  });
  if (!response.ok) throw new Error(`moto set-transition answered ${response.status}`);
  return {
    url,
    pid: child.pid!,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
}

/** The SDK's own variables that point it at `endpoint` with static test credentials. */
export function awsSdkEnv(endpoint: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    // Nothing from this machine's ~/.aws may leak into a test.
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  };
}

/** moto's S3 with its static test credentials, path-style, as the tests' own client. */
export function motoS3Client(endpoint: string): S3Client {
  return new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
}

/** The fleet's S3_* settings for `bucket` at `endpoint` (moto, or a proxy in front of it). */
export function fleetS3Env(endpoint: string, bucket: string): Record<string, string> {
  return {
    S3_ENDPOINT: endpoint,
    S3_ACCESS_KEY: 'testing',
    S3_SECRET_KEY: 'testing',
    S3_BUCKET_NAME: bucket,
    // nothing of the machine's own AWS configuration
    AWS_CONFIG_FILE: awsSdkEnv(endpoint).AWS_CONFIG_FILE,
  };
}
