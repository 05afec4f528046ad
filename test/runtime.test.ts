import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  baseEnv,
  cleanup,
  httpRequest,
  peerUrls,
  pidOf,
  spawnFleetProcess,
  testDatabaseUri,
  uniqueName,
  waitFor,
} from './support/fleet';

/**
 * One Node line everywhere: the `node` devDependency puts its Node first on the PATH of every npm script, so
 * `npm start`, `npm test` and CI run the line the Docker image ships, whatever Node the machine has.
 */
jest.setTimeout(120_000);

const root = path.resolve(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const pinned: string = pkg.devDependencies.node;
const majorOf = (version: string) => Number(/(\d+)/.exec(version)![1]);

it('the tests run on the pinned Node, and engines, @types/node and the Docker image name its line', () => {
  expect(process.version).toBe(`v${pinned}`);
  expect(majorOf(pkg.engines.node)).toBe(majorOf(pinned));
  expect(majorOf(pkg.devDependencies['@types/node'])).toBe(majorOf(pinned));
  const images = [...fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8').matchAll(/^FROM node:(\d+)/gm)].map((m) =>
    Number(m[1]),
  );
  expect(images.length).toBeGreaterThan(0);
  expect(new Set(images)).toEqual(new Set([majorOf(pinned)]));
});

it('an npm script started from a shell without the project on its PATH runs the pinned Node', () => {
  const PATH = (process.env.PATH ?? '')
    .split(':')
    .filter((dir) => !dir.includes('node_modules'))
    .join(':');
  const version = execFileSync('npm', ['exec', '--offline', '--', 'node', '-p', 'process.version'], {
    cwd: root,
    env: { PATH, HOME: process.env.HOME ?? '/tmp' },
    encoding: 'utf8',
  }).trim();
  expect(version).toBe(`v${pinned}`);
});

it('the fleet names its Node in its startup line, and its local bot processes run the same binary', async () => {
  const peers = peerUrls();
  const env = await baseEnv({
    BOOTSTRAP_API_KEY: 'runtime-bootstrap-key-0123456789',
    REDIS_URL: peers.redisUrl,
    MONGODB_URI: testDatabaseUri(peers.mongodbUri, uniqueName('meeboter_test_runtime')),
    LOG_LEVEL: 'info', // the startup line is an info line
  });
  delete env.PLATFORM_PRIORITY; // the default: local, with the sim bot
  const fleet = spawnFleetProcess('all', env);
  try {
    const started = await waitFor(
      () =>
        fleet
          .output()
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => JSON.parse(line))
          .find((entry) => entry.msg === 'meeboter started'),
      'the startup line',
    );
    expect(started.node).toBe(`v${pinned}`);

    const auth = env.BOOTSTRAP_API_KEY;
    const created = await httpRequest(env.PUBLIC_URL, 'POST', '/api/bots', {
      auth,
      body: { meeting: { platform: 'zoom', meetingId: '123456789' }, metadata: { 'sim.durationMs': '60000' } },
    });
    expect(created.status).toBe(201);
    const inCall = await waitFor(async () => {
      const bot = (await httpRequest(env.PUBLIC_URL, 'GET', `/api/bots/${created.body.id}`, { auth })).body;
      return bot.status === 'IN_CALL' ? bot : null;
    }, 'the bot to be IN_CALL');
    // The bot's process group (LOCAL_BOT_COMMAND runs under /bin/sh): its processes' binaries.
    const group = pidOf(inCall.platformIdentifier);
    const binaries = fs
      .readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .flatMap((pid) => {
        try {
          const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
          const processGroup = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
          return processGroup === group ? [fs.realpathSync(`/proc/${pid}/exe`)] : [];
        } catch {
          return []; // a process that exited meanwhile
        }
      });
    expect(binaries).toContain(fs.realpathSync(process.execPath));
    // No other Node runs the bot: anything but the shell is the pinned binary.
    expect(
      binaries.filter((binary) => !binary.endsWith('/dash') && !binary.endsWith('/bash') && !binary.endsWith('/sh')),
    ).toEqual([fs.realpathSync(process.execPath)]);
    await httpRequest(env.PUBLIC_URL, 'DELETE', `/api/bots/${created.body.id}`, { auth });
  } finally {
    await fleet.kill('SIGTERM');
    await cleanup({ redisUrl: env.REDIS_URL, mongodbUri: env.MONGODB_URI }, env.REDIS_PREFIX);
  }
});
