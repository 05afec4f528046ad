import {
  configVariableNames,
  configWarnings,
  ConfigError,
  loadConfig,
  OWN_PREFIXES,
  PLATFORM_SUFFIXES,
} from '../src/config';
import { freePort } from '../src/peers';
import { spawnFleetProcess } from './support/fleet';

/** loadConfig is pure: plain objects in, a frozen config or one ConfigError naming the variable out. */
const fails = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
};

it('has the seed defaults with no configuration at all', () => {
  const config = loadConfig({});
  expect(config.platforms).toEqual([
    { name: 'local', kind: 'local', limit: 5, queueTimeoutMs: 30000, startTimeoutMs: 300000, startRetries: 2 },
  ]);
  expect(config).toMatchObject({
    port: 3000,
    globalQueueTimeoutMs: 600000,
    deploymentQueueMaxConcurrent: 4,
    heartbeatTimeoutMs: 300000,
    heartbeatIntervalMs: 30000,
    deployTimeoutMs: 900000,
    sweepIntervalMs: 30000,
    slotRecoveryIntervalMs: 300000,
    leaveGraceMs: 60000,
    publicUrl: 'http://127.0.0.1:3000',
    s3: { region: 'us-east-1' },
  });
  expect(Object.isFrozen(config)).toBe(true);
  expect(Object.isFrozen(config.platforms[0])).toBe(true);
});

it('names the bad variable', () => {
  expect(fails({ PORT: 'abc' })).toBe('PORT: must be a number');
  expect(fails({ GLOBAL_QUEUE_TIMEOUT_MS: '0' })).toBe('GLOBAL_QUEUE_TIMEOUT_MS: must be greater than or equal to 1');
  expect(fails({ LOCAL_BOT_LIMIT: '-3' })).toMatch(/^LOCAL_BOT_LIMIT: /);
  expect(fails({ REDIS_URL: 'http://x' })).toMatch(/^REDIS_URL: /);
  expect(fails({ PLATFORM_PRIORITY: 'local,nomad' })).toMatch(/^PLATFORM_PRIORITY: unknown platform "nomad"/);
  expect(fails({ PLATFORM_PRIORITY: 'local,local' })).toBe('PLATFORM_PRIORITY: "local" is listed twice');
  expect(fails({ WORKER_PLATFORMS: 'aws' })).toBe('WORKER_PLATFORMS: "aws" is not in PLATFORM_PRIORITY');
});

it('Redis through Sentinel: REDIS_SENTINELS and REDIS_SENTINEL_NAME together, each address host:port', () => {
  expect(loadConfig({}).redisSentinel).toBeUndefined();
  const config = loadConfig({
    REDIS_SENTINELS: 'sentinel-a.internal:26379, 10.0.0.7:26380,[fd00::1]:26381',
    REDIS_SENTINEL_NAME: 'meeboter',
  });
  expect(config.redisSentinel).toEqual({
    name: 'meeboter',
    sentinels: [
      { host: 'sentinel-a.internal', port: 26379 },
      { host: '10.0.0.7', port: 26380 },
      { host: 'fd00::1', port: 26381 },
    ],
  });
  // REDIS_URL lends its user, password and database; its host is not used
  expect(
    loadConfig({
      REDIS_SENTINELS: '127.0.0.1:26379',
      REDIS_SENTINEL_NAME: 'meeboter',
      REDIS_URL: 'redis://fleet:p%40ss@ignored.example:6379/2',
    }).redisSentinel,
  ).toEqual({
    name: 'meeboter',
    sentinels: [{ host: '127.0.0.1', port: 26379 }],
    username: 'fleet',
    password: 'p@ss',
    db: 2,
  });
  expect(fails({ REDIS_SENTINELS: '127.0.0.1:26379' })).toBe(
    "REDIS_SENTINEL_NAME: required with REDIS_SENTINELS (the primary's name in Sentinel)",
  );
  expect(fails({ REDIS_SENTINEL_NAME: 'meeboter' })).toBe(
    'REDIS_SENTINELS: required with REDIS_SENTINEL_NAME (host:port[,host:port...])',
  );
  for (const [value, entry] of [
    ['127.0.0.1', '127.0.0.1'],
    ['host:port', 'host:port'],
    ['a:26379,:26379', ':26379'],
    ['a:26379, b:0', 'b:0'],
    ['a:70000', 'a:70000'],
    ['fd00::1:26379', 'fd00::1:26379'],
    ['a:1:2', 'a:1:2'],
  ]) {
    expect(fails({ REDIS_SENTINELS: value, REDIS_SENTINEL_NAME: 'meeboter' })).toBe(
      `REDIS_SENTINELS: "${entry}" is not host:port (a port from 1 to 65535)`,
    );
  }
  expect(fails({ REDIS_SENTINELS: ',', REDIS_SENTINEL_NAME: 'meeboter' })).toBe(
    'REDIS_SENTINELS: names no sentinel (host:port[,host:port...])',
  );
  expect(fails({ REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_NAME: 'my master' })).toMatch(/^REDIS_SENTINEL_NAME: /);
  expect(
    fails({ REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_NAME: 'meeboter', REDIS_URL: 'rediss://:secret@a:6380' }),
  ).toBe('REDIS_URL: rediss (TLS) cannot be combined with REDIS_SENTINELS; use a redis: URL');
  expect(fails({ REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_NAME: 'meeboter', REDIS_URL: 'redis://a:6379/x' })).toBe(
    'REDIS_URL: the database "x" is not a number',
  );
});

it("demands a platform's variables only when it is enabled", () => {
  expect(() => loadConfig({ PLATFORM_PRIORITY: 'local' })).not.toThrow();
  expect(fails({ PLATFORM_PRIORITY: 'aws', AWS_BOT_LIMIT: '50' })).toBe('AWS_REGION: is required');
  expect(fails({ PLATFORM_PRIORITY: 'coolify', COOLIFY_BOT_LIMIT: '3' })).toBe('COOLIFY_API_URL: is required');
  expect(fails({ PLATFORM_PRIORITY: 'k8s', K8S_BOT_LIMIT: '80' })).toBe(
    'K8S_IMAGE_REGISTRY or GHCR_ORG: one of them is required',
  );
  const k8s = loadConfig({ PLATFORM_PRIORITY: 'k8s,local', K8S_BOT_LIMIT: '80', GHCR_ORG: 'Payme-Works' });
  expect(k8s.k8s).toMatchObject({
    namespace: 'meeboter',
    imageRegistry: 'ghcr.io/payme-works',
    cpuRequest: '500m',
    imagePullLockEnabled: true,
  });
  expect(k8s.platforms.map((p) => `${p.name}:${p.limit}:${p.queueTimeoutMs}`)).toEqual([
    'k8s:80:60000',
    'local:5:30000',
  ]);
});

it('k8s: every seed variable, the pull secret, and where the credentials come from', () => {
  const base = { PLATFORM_PRIORITY: 'k8s', K8S_BOT_LIMIT: '80', GHCR_ORG: 'Payme-Works' };
  expect(loadConfig(base).k8s).toEqual({
    namespace: 'meeboter',
    credentials: 'default',
    imageRegistry: 'ghcr.io/payme-works',
    imageTag: 'latest',
    cpuRequest: '500m',
    cpuLimit: '1000m',
    memoryRequest: '1Gi',
    memoryLimit: '2Gi',
    imagePullLockEnabled: true,
    imagePullSecret: 'ghcr-secret',
  });
  expect(loadConfig({ ...base, KUBERNETES_SERVICE_HOST: '10.96.0.1' }).k8s!.credentials).toBe('in-cluster');
  const set = loadConfig({
    ...base,
    KUBERNETES_SERVICE_HOST: '10.96.0.1',
    K8S_KUBECONFIG: '/etc/kube/config',
    K8S_NAMESPACE: 'bots',
    K8S_IMAGE_REGISTRY: 'registry.example/bots',
    K8S_IMAGE_TAG: 'v2',
    K8S_BOT_CPU_REQUEST: '150m',
    K8S_BOT_CPU_LIMIT: '2',
    K8S_BOT_MEMORY_REQUEST: '512Mi',
    K8S_BOT_MEMORY_LIMIT: '3Gi',
    K8S_IMAGE_PULL_LOCK_ENABLED: 'false',
    K8S_IMAGE_PULL_SECRET: 'regcred',
    K8S_QUEUE_TIMEOUT_MS: '5000',
    K8S_START_TIMEOUT_MS: '90000',
  });
  expect(set.k8s).toEqual({
    namespace: 'bots',
    credentials: { kubeconfig: '/etc/kube/config' },
    imageRegistry: 'registry.example/bots',
    imageTag: 'v2',
    cpuRequest: '150m',
    cpuLimit: '2',
    memoryRequest: '512Mi',
    memoryLimit: '3Gi',
    imagePullLockEnabled: false,
    imagePullSecret: 'regcred',
  });
  expect(set.platforms[0]).toMatchObject({ queueTimeoutMs: 5000, startTimeoutMs: 90000 });
});

it("lists the variables it reads: every platform kind's, and those of the platforms named", () => {
  const names = configVariableNames(['k8s', 'sim-a']);
  for (const name of [
    'PORT',
    'BOT_TOKEN_SECRET',
    'METRICS_PORT',
    'K8S_NAMESPACE',
    'K8S_START_TIMEOUT_MS',
    'SIM_A_BOT_LIMIT',
    'SIM_A_QUEUE_TIMEOUT_MS',
    'AWS_ECS_CLUSTER',
    'COOLIFY_API_TOKEN',
  ]) {
    expect(names).toContain(name);
  }
  expect(names).not.toContain('SIM_B_BOT_LIMIT');
  expect(configVariableNames(['sim-b'])).toContain('SIM_B_BOT_LIMIT');
});

it('signs webhooks with WEBHOOK_SECRET, else with a key derived from BOT_TOKEN_SECRET', () => {
  const derived = (secret: string) => loadConfig({ BOT_TOKEN_SECRET: secret }).webhooks.secret;
  expect(derived('bot-token-secret-0123456789')).toBe(derived('bot-token-secret-0123456789'));
  expect(derived('bot-token-secret-0123456789')).not.toBe(derived('other-token-secret-0123456789'));
  expect(derived('bot-token-secret-0123456789')).not.toBe('bot-token-secret-0123456789');
  expect(
    loadConfig({ BOT_TOKEN_SECRET: 'bot-token-secret-0123456789', WEBHOOK_SECRET: 'webhook-secret-0123456789' })
      .webhooks.secret,
  ).toBe('webhook-secret-0123456789');
});

it("reads each platform's <NAME>_START_RETRIES (default 2, 0 turns retries off) and refuses a bad one by name", () => {
  const config = loadConfig({ PLATFORM_PRIORITY: 'sim-a,local', SIM_A_START_RETRIES: '0', LOCAL_START_RETRIES: '5' });
  expect(config.platforms.map((p) => [p.name, p.startRetries])).toEqual([
    ['sim-a', 0],
    ['local', 5],
  ]);
  expect(loadConfig({ PLATFORM_PRIORITY: 'sim-a' }).platforms[0].startRetries).toBe(2);
  expect(fails({ PLATFORM_PRIORITY: 'sim-a', SIM_A_START_RETRIES: '-1' })).toMatch(/^SIM_A_START_RETRIES: /);
  expect(fails({ PLATFORM_PRIORITY: 'local', LOCAL_START_RETRIES: 'two' })).toMatch(
    /^LOCAL_START_RETRIES: must be a number/,
  );
  // Each try's number is in its deployment name, which ECS caps at 36 characters.
  expect(fails({ PLATFORM_PRIORITY: 'local', LOCAL_START_RETRIES: '10' })).toMatch(
    /^LOCAL_START_RETRIES: must be less than or equal to 9/,
  );
  expect(configVariableNames(['k8s'])).toContain('K8S_START_RETRIES');
});

it('supports several sim platforms, each with its own limit and timeout', () => {
  const config = loadConfig({ PLATFORM_PRIORITY: 'sim-a, sim-b', SIM_A_BOT_LIMIT: '3', SIM_B_QUEUE_TIMEOUT_MS: '10' });
  expect(config.platforms).toEqual([
    { name: 'sim-a', kind: 'sim', limit: 3, queueTimeoutMs: 30000, startTimeoutMs: 300000, startRetries: 2 },
    { name: 'sim-b', kind: 'sim', limit: 1000, queueTimeoutMs: 10, startTimeoutMs: 300000, startRetries: 2 },
  ]);
});

it("reads the seed's AWS variables, a start timeout, and Fargate Spot then on-demand Fargate by default", () => {
  const seed = {
    PLATFORM_PRIORITY: 'aws',
    AWS_REGION: 'us-east-2',
    AWS_ECS_CLUSTER: 'meeboter-bots',
    AWS_ECS_SUBNETS: 'subnet-a, subnet-b',
    AWS_ECS_SECURITY_GROUPS: 'sg-x',
    AWS_ECS_TASK_DEF_GOOGLE_MEET: 'meeboter-google-meet-bot',
    AWS_ECS_TASK_DEF_MICROSOFT_TEAMS: 'meeboter-microsoft-teams-bot',
    AWS_ECS_TASK_DEF_ZOOM: 'meeboter-zoom-bot',
    AWS_BOT_LIMIT: '50',
  };
  const config = loadConfig({ ...seed, AWS_START_TIMEOUT_MS: '120000' });
  expect(config.platforms).toEqual([
    { name: 'aws', kind: 'aws', limit: 50, queueTimeoutMs: 30000, startTimeoutMs: 120000, startRetries: 2 },
  ]);
  expect(config.aws).toEqual({
    region: 'us-east-2',
    cluster: 'meeboter-bots',
    subnets: ['subnet-a', 'subnet-b'],
    securityGroups: ['sg-x'],
    assignPublicIp: true,
    taskDefinitions: {
      'google-meet': 'meeboter-google-meet-bot',
      'microsoft-teams': 'meeboter-microsoft-teams-bot',
      zoom: 'meeboter-zoom-bot',
    },
    launchOptions: [{ capacityProvider: 'FARGATE_SPOT' }, { capacityProvider: 'FARGATE' }],
  });
  expect(loadConfig({ ...seed, AWS_ECS_CAPACITY_PROVIDERS: 'FARGATE' }).aws!.launchOptions).toEqual([
    { capacityProvider: 'FARGATE' },
  ]);
  expect(loadConfig({ ...seed, AWS_ECS_LAUNCH_TYPE: 'FARGATE' }).aws!.launchOptions).toEqual([
    { launchType: 'FARGATE' },
  ]);
  expect(loadConfig({ ...seed, AWS_ECS_ASSIGN_PUBLIC_IP: 'false' }).aws!.assignPublicIp).toBe(false);
  expect(fails({ ...seed, AWS_ECS_LAUNCH_TYPE: 'EC2' })).toMatch(/^AWS_ECS_LAUNCH_TYPE: must be \[FARGATE\]/);
  expect(fails({ ...seed, AWS_ECS_LAUNCH_TYPE: 'FARGATE', AWS_ECS_CAPACITY_PROVIDERS: 'FARGATE' })).toBe(
    'AWS_ECS_CAPACITY_PROVIDERS: cannot be combined with AWS_ECS_LAUNCH_TYPE',
  );
  expect(fails({ ...seed, AWS_ECS_SUBNETS: '' })).toBe('AWS_ECS_SUBNETS: is required');
  expect(fails({ ...seed, AWS_START_TIMEOUT_MS: '0' })).toMatch(/^AWS_START_TIMEOUT_MS: /);
});

it('treats empty strings as unset', () => {
  expect(loadConfig({ PORT: '', PLATFORM_PRIORITY: '' }).port).toBe(3000);
});

it('retries a webhook event for 24 h by default, WEBHOOK_RETRY_MAX_AGE_MS for at most 7 days', () => {
  expect(loadConfig({}).webhooks.retryMaxAgeMs).toBe(86_400_000);
  expect(loadConfig({ WEBHOOK_RETRY_MAX_AGE_MS: '60000' }).webhooks.retryMaxAgeMs).toBe(60_000);
  expect(fails({ WEBHOOK_RETRY_MAX_AGE_MS: String(8 * 86_400_000) })).toMatch(/^WEBHOOK_RETRY_MAX_AGE_MS: /);
});

it('reads WEBHOOK_ALLOWED_HOSTS as host names and address ranges', () => {
  expect(loadConfig({}).webhooks).toMatchObject({ allowedHosts: [], allowedRanges: [] });
  const config = loadConfig({
    WEBHOOK_ALLOWED_HOSTS: 'Hooks.Internal.Example, localhost,127.0.0.1, 10.0.0.0/8,fd00::/8',
  });
  expect(config.webhooks.allowedHosts).toEqual(['hooks.internal.example', 'localhost']);
  expect(config.webhooks.allowedRanges).toEqual([
    { address: '127.0.0.1', prefix: 32, family: 'ipv4' },
    { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
    { address: 'fd00::', prefix: 8, family: 'ipv6' },
  ]);
  expect(fails({ WEBHOOK_ALLOWED_HOSTS: 'localhost,10.0.0.0/33' })).toBe(
    'WEBHOOK_ALLOWED_HOSTS: "10.0.0.0/33" is neither a host name nor an IP address or CIDR range',
  );
  expect(fails({ WEBHOOK_ALLOWED_HOSTS: 'http://localhost' })).toMatch(
    /^WEBHOOK_ALLOWED_HOSTS: "http:\/\/localhost" is neither/,
  );
});

describe('bot images', () => {
  const k8s = { PLATFORM_PRIORITY: 'k8s', K8S_BOT_LIMIT: '5' };
  const coolify = {
    PLATFORM_PRIORITY: 'coolify',
    COOLIFY_BOT_LIMIT: '3',
    COOLIFY_API_URL: 'https://coolify.example/api/v1',
    COOLIFY_API_TOKEN: 't',
    COOLIFY_PROJECT_UUID: 'p',
    COOLIFY_SERVER_UUID: 's',
    COOLIFY_DESTINATION_UUID: 'd',
  };

  it.each([
    // the seed's own org, as GitHub spells it: OCI repository paths are lowercase only
    [{ GHCR_ORG: 'Payme-Works' }, 'ghcr.io/payme-works'],
    [{ GHCR_ORG: 'acme' }, 'ghcr.io/acme'],
    // a registry given in full is taken as it is (host names may have capitals, a port, a path)
    [
      { K8S_IMAGE_REGISTRY: 'Registry.Example:5000/team/bots', GHCR_ORG: 'Payme-Works' },
      'Registry.Example:5000/team/bots',
    ],
    [
      { K8S_IMAGE_REGISTRY: '123456789012.dkr.ecr.eu-west-1.amazonaws.com' },
      '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
    ],
  ])('k8s with %j pulls from %s', (env, registry) => {
    expect(loadConfig({ ...k8s, ...env }).k8s!.imageRegistry).toBe(registry);
  });

  it.each([
    [
      { K8S_IMAGE_REGISTRY: 'ghcr.io/Payme-Works' },
      /^K8S_IMAGE_REGISTRY: makes the image name "ghcr.io\/Payme-Works\/meeboter-google-meet-bot", which is not a valid image reference/,
    ],
    [{ K8S_IMAGE_REGISTRY: 'https://ghcr.io/acme' }, /^K8S_IMAGE_REGISTRY: /],
    [{ K8S_IMAGE_REGISTRY: 'ghcr.io/acme/' }, /^K8S_IMAGE_REGISTRY: /],
    [{ K8S_IMAGE_REGISTRY: 'ghcr.io/ac me' }, /^K8S_IMAGE_REGISTRY: /],
    [{ GHCR_ORG: 'Payme Works' }, /^GHCR_ORG: makes the image name "ghcr.io\/payme works\/meeboter-google-meet-bot"/],
    [{ GHCR_ORG: 'acme/' }, /^GHCR_ORG: /],
    [{ GHCR_ORG: 'acme', K8S_IMAGE_TAG: 'v1:2' }, /^K8S_IMAGE_TAG: "v1:2" is not a valid image tag/],
    [{ GHCR_ORG: 'acme', K8S_IMAGE_TAG: '-rc1' }, /^K8S_IMAGE_TAG: /],
    [{ GHCR_ORG: 'acme', K8S_IMAGE_TAG: 'x'.repeat(129) }, /^K8S_IMAGE_TAG: /],
  ])('k8s refuses %j at startup, naming the variable', (env, message) => {
    expect(fails({ ...k8s, ...env })).toMatch(message);
  });

  it('coolify lowercases the org too, and refuses an org or tag that makes no valid image, naming the variable', () => {
    expect(loadConfig({ ...coolify, GHCR_ORG: 'Payme-Works', COOLIFY_IMAGE_TAG: 'v1.2_rc' }).coolify).toMatchObject({
      ghcrOrg: 'Payme-Works',
      imageTag: 'v1.2_rc',
    });
    expect(fails({ ...coolify, GHCR_ORG: 'Payme_Works!' })).toMatch(
      /^GHCR_ORG: makes the image name "ghcr.io\/payme_works!\/meeboter-google-meet-bot"/,
    );
    expect(fails({ ...coolify, GHCR_ORG: 'acme', COOLIFY_IMAGE_TAG: 'a b' })).toMatch(
      /^COOLIFY_IMAGE_TAG: "a b" is not a valid image tag/,
    );
  });
});

it("COOLIFY_START_TIMEOUT_MS has one default, the seed's five minutes, and one value wherever it is read", () => {
  const coolify = {
    PLATFORM_PRIORITY: 'coolify',
    COOLIFY_BOT_LIMIT: '3',
    COOLIFY_API_URL: 'https://coolify.example/api/v1',
    COOLIFY_API_TOKEN: 't',
    COOLIFY_PROJECT_UUID: 'p',
    COOLIFY_SERVER_UUID: 's',
    COOLIFY_DESTINATION_UUID: 'd',
    GHCR_ORG: 'acme',
  };
  const byDefault = loadConfig(coolify);
  expect(byDefault.coolify!.startTimeoutMs).toBe(300000);
  expect(byDefault.platforms[0].startTimeoutMs).toBe(300000);
  const set = loadConfig({ ...coolify, COOLIFY_START_TIMEOUT_MS: '420000' });
  expect([set.coolify!.startTimeoutMs, set.platforms[0].startTimeoutMs]).toEqual([420000, 420000]);
});

describe('startup warnings', () => {
  const k8s = { PLATFORM_PRIORITY: 'k8s', K8S_BOT_LIMIT: '5', GHCR_ORG: 'acme' };

  it.each<[string, Record<string, string>, string[]]>([
    ['nothing amiss', { ...k8s, K8S_NAMESPACE: 'bots', LOG_LEVEL: 'info' }, []],
    [
      'a misspelt platform variable',
      { ...k8s, K8S_BOT_LIMT: '10' },
      ['K8S_BOT_LIMT is not a variable meeboter reads; did you mean K8S_BOT_LIMIT?'],
    ],
    [
      'a misspelt variable of a platform not enabled',
      { K8S_BOT_LIMT: '10' },
      ['K8S_BOT_LIMT is not a variable meeboter reads; did you mean K8S_BOT_LIMIT?'],
    ],
    [
      'one of our suffixes on an unknown platform',
      { ...k8s, KS8_BOT_LIMIT: '10' },
      ['KS8_BOT_LIMIT is not a variable meeboter reads; did you mean K8S_BOT_LIMIT?'],
    ],
    [
      'a misspelt queue timeout',
      { ...k8s, K8S_QUEUE_TIMOUT_MS: '1' },
      ['K8S_QUEUE_TIMOUT_MS is not a variable meeboter reads; did you mean K8S_QUEUE_TIMEOUT_MS?'],
    ],
    [
      'our other prefixes',
      {
        ...k8s,
        WEBHOOK_SECRT: 'x',
        S3_BUCKET: 'b',
        COOLIFY_TOKEN: 't',
        LOCAL_RUNDIR: '/tmp',
        AWS_ECS_SUBNET: 's',
        HEARTBEAT_TIMEOUT: '1',
      },
      [
        'AWS_ECS_SUBNET is not a variable meeboter reads; did you mean AWS_ECS_SUBNETS?',
        'COOLIFY_TOKEN is not a variable meeboter reads; did you mean COOLIFY_API_TOKEN?',
        'HEARTBEAT_TIMEOUT is not a variable meeboter reads; did you mean HEARTBEAT_TIMEOUT_MS?',
        'LOCAL_RUNDIR is not a variable meeboter reads; did you mean LOCAL_RUN_DIR?',
        'S3_BUCKET is not a variable meeboter reads; did you mean S3_BUCKET_NAME?',
        'WEBHOOK_SECRT is not a variable meeboter reads; did you mean WEBHOOK_SECRET?',
      ],
    ],
    // AWS_ is also the AWS SDK's: its own variables pass, a near miss of ours does not
    [
      "the AWS SDK's variables",
      {
        ...k8s,
        AWS_ACCESS_KEY_ID: 'a',
        AWS_SECRET_ACCESS_KEY: 's',
        AWS_SESSION_TOKEN: 't',
        AWS_PROFILE: 'p',
        AWS_ENDPOINT_URL: 'http://127.0.0.1:5000',
        AWS_DEFAULT_REGION: 'eu-west-1',
        AWS_CONFIG_FILE: '/c',
        AWS_SHARED_CREDENTIALS_FILE: '/s',
        AWS_WEB_IDENTITY_TOKEN_FILE: '/w',
        AWS_ROLE_ARN: 'arn',
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '/v2',
        AWS_EXECUTION_ENV: 'AWS_ECS_FARGATE',
        AWS_MAX_ATTEMPTS: '3',
        AWS_RETRY_MODE: 'adaptive',
        AWS_REGION: 'eu-west-1',
      },
      [],
    ],
    [
      'a near miss of an AWS variable of ours',
      { ...k8s, AWS_REGON: 'eu-west-1', AWS_BOT_LIMT: '3' },
      [
        'AWS_BOT_LIMT is not a variable meeboter reads; did you mean AWS_BOT_LIMIT?',
        'AWS_REGON is not a variable meeboter reads; did you mean AWS_REGION?',
      ],
    ],
    [
      "other software's variables",
      {
        ...k8s,
        KUBERNETES_SERVICE_PORT: '443',
        REDIS_PASSWORD: 'x',
        NODE_ENV: 'production',
        HOME: '/home/node',
        PATH: '/usr/bin',
      },
      [],
    ],
    [
      'variables read by npm run sim-host',
      { PLATFORM_PRIORITY: 'sim', SIM_HOST_RUN_BOTS: 'false', SIM_PLATFORMS: 'sim' },
      [],
    ],
    [
      'a configured platform not in PLATFORM_PRIORITY',
      {
        PLATFORM_PRIORITY: 'local',
        COOLIFY_BOT_LIMIT: '3',
        COOLIFY_API_URL: 'https://c.example/api/v1',
        AWS_ECS_CLUSTER: 'c',
        AWS_REGION: 'eu-west-1',
      },
      [
        'platform aws is configured (AWS_ECS_CLUSTER) but not in PLATFORM_PRIORITY (local), so it is unused',
        'platform coolify is configured (COOLIFY_API_URL, COOLIFY_BOT_LIMIT) but not in PLATFORM_PRIORITY (local), so it is unused',
      ],
    ],
    [
      'a sim platform not in PLATFORM_PRIORITY',
      {
        PLATFORM_PRIORITY: 'sim-a',
        SIM_A_BOT_LIMIT: '3',
        SIM_B_BOT_LIMIT: '4',
        SIM_BOT_LIMIT: '5',
        SIM_RUNNER: 'sim-host',
      },
      [
        'platform sim is configured (SIM_BOT_LIMIT) but not in PLATFORM_PRIORITY (sim-a), so it is unused',
        'platform sim-b is configured (SIM_B_BOT_LIMIT) but not in PLATFORM_PRIORITY (sim-a), so it is unused',
      ],
    ],
    [
      'shared settings of the sim platforms without one',
      { PLATFORM_PRIORITY: 'local', SIM_RUNNER: 'sim-host' },
      ['platform sim is configured (SIM_RUNNER) but not in PLATFORM_PRIORITY (local), so it is unused'],
    ],
    [
      'a platform enabled in second place',
      { PLATFORM_PRIORITY: 'local,k8s', K8S_BOT_LIMIT: '5', GHCR_ORG: 'acme', LOCAL_BOT_LIMIT: '2' },
      [],
    ],
    ['empty values count as unset', { ...k8s, K8S_BOT_LIMT: '', COOLIFY_BOT_LIMIT: ' ' }, []],
  ])('%s', (_case, env, warnings) => {
    expect(loadConfig(env).warnings).toEqual(warnings);
  });

  it('names variables only, never their values', () => {
    const secret = 'very-secret-value-0123456789';
    const { warnings } = loadConfig({ PLATFORM_PRIORITY: 'local', COOLIFY_API_TOKEN: secret, WEBHOOK_SECRT: secret });
    expect(warnings).toHaveLength(2);
    expect(warnings.join('\n')).not.toContain(secret);
  });

  it('knows every variable it reads, and its prefixes and suffixes are its own', () => {
    const all = ['k8s', 'aws', 'coolify', 'local', 'sim'];
    const everything = Object.fromEntries(configVariableNames(all).map((name) => [name, 'x']));
    expect(everything.K8S_BOT_LIMIT).toBe('x');
    // every variable read, all set at once with every platform enabled, draws no warning
    expect(configWarnings(everything, all)).toEqual([]);
    for (const prefix of OWN_PREFIXES)
      expect(Object.keys(everything).some((name) => name.startsWith(prefix))).toBe(true);
    expect(PLATFORM_SUFFIXES).toEqual(['_BOT_LIMIT', '_QUEUE_TIMEOUT_MS', '_START_TIMEOUT_MS', '_START_RETRIES']);
  });
});

it('a fleet process logs each warning once at startup, as a warn line', async () => {
  const [redisPort, mongoPort] = [await freePort(), await freePort()];
  const fleet = spawnFleetProcess('api', {
    BOT_TOKEN_SECRET: 'test-secret-0123456789abcdef',
    PORT: String(await freePort()),
    // nothing listens there: the process stops after its startup lines
    REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    MONGODB_URI: `mongodb://127.0.0.1:${mongoPort}/meeboter_test`,
    PLATFORM_PRIORITY: 'local',
    K8S_BOT_LIMT: '10',
    COOLIFY_BOT_LIMIT: '3',
  });
  await new Promise((resolve) => fleet.child.once('exit', resolve));
  const lines = fleet
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
  const warnings = lines.filter((line) => String(line.msg).startsWith('configuration warning: '));
  expect(warnings.map((line) => [line.level, line.msg])).toEqual([
    ['warn', 'configuration warning: K8S_BOT_LIMT is not a variable meeboter reads; did you mean K8S_BOT_LIMIT?'],
    [
      'warn',
      'configuration warning: platform coolify is configured (COOLIFY_BOT_LIMIT) but not in PLATFORM_PRIORITY (local), so it is unused',
    ],
  ]);
}, 60_000);
it("MILO_AUTH_TOKEN, the seed's static bot token, stops startup naming why: it is neither accepted nor used to sign", () => {
  for (const env of <Array<Record<string, string>>>[
    { MILO_AUTH_TOKEN: 'your-milo-auth-token' },
    { MILO_AUTH_TOKEN: 'same-secret-0123456789', BOT_TOKEN_SECRET: 'same-secret-0123456789' },
    { MILO_AUTH_TOKEN: 'short' },
  ]) {
    expect(fails(env)).toBe(
      'MILO_AUTH_TOKEN: not used by this fleet: every bot gets its own token (signed with BOT_TOKEN_SECRET) and no static bot token is accepted; remove it, and set BOT_TOKEN_SECRET to a new secret if you set one',
    );
  }
  // an empty value counts as unset, as everywhere
  expect(loadConfig({ MILO_AUTH_TOKEN: '', BOT_TOKEN_SECRET: 'bot-token-secret-0123456789' }).botTokenSecret).toBe(
    'bot-token-secret-0123456789',
  );
});

it('a local host counts as gone after LOCAL_HOST_GONE_AFTER_MS (5 min by default), never sooner than WORKER_LOCK_DURATION_MS, its default neither', () => {
  expect(loadConfig({}).localHostGoneAfterMs).toBe(300000);
  expect(loadConfig({ LOCAL_HOST_GONE_AFTER_MS: '60000' }).localHostGoneAfterMs).toBe(60000);
  expect(fails({ LOCAL_HOST_GONE_AFTER_MS: '20000' })).toContain('LOCAL_HOST_GONE_AFTER_MS');
  expect(loadConfig({ WORKER_LOCK_DURATION_MS: '600000' }).localHostGoneAfterMs).toBe(600000);
  expect(loadConfig({ WORKER_LOCK_DURATION_MS: '2000', LOCAL_HOST_GONE_AFTER_MS: '2000' }).localHostGoneAfterMs).toBe(
    2000,
  );
});
