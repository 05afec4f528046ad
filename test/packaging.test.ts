import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';

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
