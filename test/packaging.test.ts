import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { configVariableNames, loadConfig, PLATFORM_KINDS } from '../src/config';
import type { UntypedJson } from './support/fleet';

/** docker-compose.yml is what the Compose client accepts (checked without a Docker engine). */
const root = path.resolve(__dirname, '..');

/** `config` of the Compose client (the plugin, else docker-compose) in `dir`, with only this environment. */
function composeConfig(
  dir = root,
  env: Record<string, string> = { BOT_TOKEN_SECRET: 'compose-check-0123456789' },
): string {
  const clean = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env };
  const plugin = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
  const [command, args] = plugin.status === 0 ? ['docker', ['compose', 'config']] : ['docker-compose', ['config']];
  return execFileSync(command, args, { cwd: dir, env: clean, encoding: 'utf8' });
}

type Services = Record<string, { environment: Record<string, string | null>; [key: string]: UntypedJson }>;
const servicesOf = (config: string) => (yaml.load(config) as { services: Services }).services;
/** What the container gets: a name without a value is left unset. */
const containerEnv = (environment: Record<string, string | null>) =>
  Object.fromEntries(
    Object.entries(environment).filter(
      (entry): entry is [string, string] => entry[1] !== null && entry[1] !== undefined,
    ),
  );

/** Set by Compose for each service itself, or by Kubernetes, rather than by the operator. */
const FIXED_BY_COMPOSE = ['PORT', 'METRICS_PORT', 'LOCAL_HOST_ID', 'KUBERNETES_SERVICE_HOST'];
/** The AWS SDK's own credentials and endpoints, which the `aws` platform reads through the SDK. */
const AWS_SDK = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_ENDPOINT_URL',
  'AWS_ENDPOINT_URL_ECS',
];

it('docker-compose.yml passes the Compose client, with a healthcheck on every service and a worker that scales', () => {
  const config = composeConfig();
  for (const service of ['redis', 'mongo', 'api', 'worker']) expect(config).toMatch(new RegExp(`\\n  ${service}:\\n`));
  expect(config.match(/\n {4}healthcheck:\n/g)).toHaveLength(4);
  // `--scale worker=N` needs workers without a fixed container name
  expect(config).not.toMatch(/container_name:/);
});

it('compose: Redis append-only without eviction, data on volumes, roles api and worker, known variables, a grace period above the shutdown deadline', () => {
  const { services } = yaml.load(composeConfig()) as { services: Record<string, UntypedJson> };
  const command = (name: string) => [services[name].command].flat().join(' ');
  expect(command('redis')).toMatch(/--appendonly yes\b/);
  expect(command('redis')).toMatch(/--maxmemory-policy noeviction\b/);
  expect(
    services.redis.volumes.map((v: string | { target: string }) => (typeof v === 'string' ? v : v.target)),
  ).toContainEqual(expect.stringMatching(/^(redis-data:)?\/data/));
  expect(services.mongo.image).toMatch(/^mongo:\d/);
  expect(
    services.mongo.volumes.map((v: string | { target: string }) => (typeof v === 'string' ? v : v.target)),
  ).toContainEqual(expect.stringMatching(/^(mongo-data:)?\/data\/db/));
  expect(command('api')).toBe('node dist/src/main.js api');
  expect(command('worker')).toBe('node dist/src/main.js worker');

  for (const name of ['api', 'worker']) {
    const env = services[name].environment;
    const known = new Set([...configVariableNames(PLATFORM_KINDS), ...AWS_SDK]);
    expect(Object.keys(env).filter((variable) => !known.has(variable))).toEqual([]);
    expect(env.BOT_TOKEN_SECRET).toBe('compose-check-0123456789');
  }
  // Compose's default grace is 10 s; the API's and the worker's are set above their SHUTDOWN_TIMEOUT_MS
  for (const name of ['api', 'worker']) {
    const graceSeconds = Number(/^(\d+)s$/.exec(services[name].stop_grace_period)![1]);
    expect(graceSeconds * 1000).toBeGreaterThan(Number(services[name].environment.SHUTDOWN_TIMEOUT_MS));
  }
});

describe('compose forwards every variable of the configuration to the API and the workers', () => {
  const inProject = (dotenv: string | undefined) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-compose-'));
    copyFileSync(path.join(root, 'docker-compose.yml'), path.join(dir, 'docker-compose.yml'));
    if (dotenv !== undefined) writeFileSync(path.join(dir, '.env'), dotenv);
    return dir;
  };

  it('a .env enabling coolify starts a fleet with its settings, in the API and in every worker', () => {
    const dotenv = [
      'BOT_TOKEN_SECRET=dotenv-secret-0123456789abcdef',
      'PLATFORM_PRIORITY=coolify,local',
      'COOLIFY_API_URL=https://coolify.example.com/api/v1',
      'COOLIFY_API_TOKEN=token-123',
      'COOLIFY_PROJECT_UUID=project-1',
      'COOLIFY_SERVER_UUID=server-1',
      'COOLIFY_DESTINATION_UUID=destination-1',
      'COOLIFY_BOT_LIMIT=12',
      'COOLIFY_START_TIMEOUT_MS=240000',
      'GHCR_ORG=Payme-Works',
      'S3_BUCKET_NAME=recordings',
      'WEBHOOK_SECRET=webhook-secret-0123456789',
      'LOCAL_BOT_LIMIT=2',
    ].join('\n');
    const services = servicesOf(composeConfig(inProject(dotenv), {}));
    for (const name of ['api', 'worker']) {
      const config = loadConfig(containerEnv(services[name].environment));
      expect(config.platforms.map((p) => `${p.name}:${p.limit}`)).toEqual(['coolify:12', 'local:2']);
      expect(config.coolify).toMatchObject({
        apiUrl: 'https://coolify.example.com/api/v1',
        apiToken: 'token-123',
        ghcrOrg: 'Payme-Works',
        startTimeoutMs: 240000,
      });
      expect(config).toMatchObject({
        botTokenSecret: 'dotenv-secret-0123456789abcdef',
        s3: { bucketName: 'recordings' },
        webhooks: { secret: 'webhook-secret-0123456789' },
      });
      expect(config.redisUrl).toBe('redis://redis:6379');
      expect(config.warnings).toEqual([]);
    }
  });

  it('every variable the configuration reads (but those Compose sets per service) reaches both, from .env or the shell', () => {
    const forwarded = [...configVariableNames(PLATFORM_KINDS), ...AWS_SDK].filter(
      (name) => !FIXED_BY_COMPOSE.includes(name),
    );
    const value = (name: string) => `value-of-${name.toLowerCase()}`;
    const half = Math.ceil(forwarded.length / 2);
    const dotenv = forwarded
      .slice(0, half)
      .map((name) => `${name}=${value(name)}`)
      .join('\n');
    const shell = Object.fromEntries(forwarded.slice(half).map((name) => [name, value(name)]));
    const services = servicesOf(composeConfig(inProject(dotenv), shell));
    for (const name of ['api', 'worker']) {
      const env = services[name].environment;
      expect(forwarded.filter((variable) => env[variable] !== value(variable))).toEqual([]);
    }
    expect([services.api.environment.PORT, services.worker.environment.METRICS_PORT]).toEqual(['3000', '9100']);
  });

  it("without a .env, a variable nobody set stays unset (the fleet's default holds)", () => {
    const services = servicesOf(composeConfig(inProject(undefined), { BOT_TOKEN_SECRET: 'shell-secret-0123456789' }));
    for (const name of ['api', 'worker']) {
      const env = containerEnv(services[name].environment);
      expect(env.COOLIFY_BOT_LIMIT).toBeUndefined();
      const config = loadConfig(env);
      expect(config.platforms.map((p) => p.name)).toEqual(['local']);
      expect(config.shutdownTimeoutMs).toBe(25000);
      expect(config.warnings).toEqual([]);
    }
  });
});
