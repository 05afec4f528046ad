import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import yaml from 'js-yaml';
import { configVariableNames } from '../src/config';

/** docker-compose.yml is what the Compose client accepts (checked without a Docker engine). */
const root = path.resolve(__dirname, '..');

function composeConfig(): string {
  const env = { ...process.env, BOT_TOKEN_SECRET: 'compose-check-0123456789' };
  const plugin = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
  const [command, args] = plugin.status === 0 ? ['docker', ['compose', 'config']] : ['docker-compose', ['config']];
  return execFileSync(command, args, { cwd: root, env, encoding: 'utf8' });
}

it('docker-compose.yml passes the Compose client, with a healthcheck on every service and a worker that scales', () => {
  const config = composeConfig();
  for (const service of ['redis', 'mongo', 'api', 'worker']) expect(config).toMatch(new RegExp(`\\n  ${service}:\\n`));
  expect(config.match(/\n    healthcheck:\n/g)).toHaveLength(4);
  // `--scale worker=N` needs workers without a fixed container name
  expect(config).not.toMatch(/container_name:/);
});

it('compose: Redis append-only without eviction, data on volumes, roles api and worker, known variables, a grace period above the shutdown deadline', () => {
  const { services } = yaml.load(composeConfig()) as { services: Record<string, any> };
  const command = (name: string) => [services[name].command].flat().join(' ');
  expect(command('redis')).toMatch(/--appendonly yes\b/);
  expect(command('redis')).toMatch(/--maxmemory-policy noeviction\b/);
  expect(services.redis.volumes.map((v: any) => (typeof v === 'string' ? v : v.target))).toContainEqual(expect.stringMatching(/^(redis-data:)?\/data/));
  expect(services.mongo.image).toMatch(/^mongo:\d/);
  expect(services.mongo.volumes.map((v: any) => (typeof v === 'string' ? v : v.target))).toContainEqual(expect.stringMatching(/^(mongo-data:)?\/data\/db/));
  expect(command('api')).toBe('node dist/src/main.js api');
  expect(command('worker')).toBe('node dist/src/main.js worker');

  for (const name of ['api', 'worker']) {
    const env: Record<string, string> = services[name].environment;
    const known = new Set(configVariableNames(env.PLATFORM_PRIORITY.split(',')));
    expect(Object.keys(env).filter((variable) => !known.has(variable))).toEqual([]);
    expect(env.BOT_TOKEN_SECRET).toBe('compose-check-0123456789');
  }
  // Compose's default grace is 10 s; the API's and the worker's are set above their SHUTDOWN_TIMEOUT_MS
  for (const name of ['api', 'worker']) {
    const graceSeconds = Number(/^(\d+)s$/.exec(services[name].stop_grace_period)![1]);
    expect(graceSeconds * 1000).toBeGreaterThan(Number(services[name].environment.SHUTDOWN_TIMEOUT_MS));
  }
});
