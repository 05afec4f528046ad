import { configVariableNames, ConfigError, loadConfig } from '../src/config';

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
  expect(config.platforms).toEqual([{ name: 'local', kind: 'local', limit: 5, queueTimeoutMs: 30000, startTimeoutMs: 300000 }]);
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

it('demands a platform\'s variables only when it is enabled', () => {
  expect(() => loadConfig({ PLATFORM_PRIORITY: 'local' })).not.toThrow();
  expect(fails({ PLATFORM_PRIORITY: 'aws', AWS_BOT_LIMIT: '50' })).toBe('AWS_REGION: is required');
  expect(fails({ PLATFORM_PRIORITY: 'coolify', COOLIFY_BOT_LIMIT: '3' })).toBe('COOLIFY_API_URL: is required');
  expect(fails({ PLATFORM_PRIORITY: 'k8s', K8S_BOT_LIMIT: '80' })).toBe('K8S_IMAGE_REGISTRY or GHCR_ORG: one of them is required');
  const k8s = loadConfig({ PLATFORM_PRIORITY: 'k8s,local', K8S_BOT_LIMIT: '80', GHCR_ORG: 'Payme-Works' });
  expect(k8s.k8s).toMatchObject({ namespace: 'meeboter', imageRegistry: 'ghcr.io/Payme-Works', cpuRequest: '500m', imagePullLockEnabled: true });
  expect(k8s.platforms.map((p) => `${p.name}:${p.limit}:${p.queueTimeoutMs}`)).toEqual(['k8s:80:60000', 'local:5:30000']);
});

it('k8s: every seed variable, the pull secret, and where the credentials come from', () => {
  const base = { PLATFORM_PRIORITY: 'k8s', K8S_BOT_LIMIT: '80', GHCR_ORG: 'Payme-Works' };
  expect(loadConfig(base).k8s).toEqual({
    namespace: 'meeboter',
    credentials: 'default',
    imageRegistry: 'ghcr.io/Payme-Works',
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
    ...base, KUBERNETES_SERVICE_HOST: '10.96.0.1', K8S_KUBECONFIG: '/etc/kube/config', K8S_NAMESPACE: 'bots',
    K8S_IMAGE_REGISTRY: 'registry.example/bots', K8S_IMAGE_TAG: 'v2', K8S_BOT_CPU_REQUEST: '150m', K8S_BOT_CPU_LIMIT: '2',
    K8S_BOT_MEMORY_REQUEST: '512Mi', K8S_BOT_MEMORY_LIMIT: '3Gi', K8S_IMAGE_PULL_LOCK_ENABLED: 'false',
    K8S_IMAGE_PULL_SECRET: 'regcred', K8S_QUEUE_TIMEOUT_MS: '5000', K8S_START_TIMEOUT_MS: '90000',
  });
  expect(set.k8s).toEqual({
    namespace: 'bots', credentials: { kubeconfig: '/etc/kube/config' }, imageRegistry: 'registry.example/bots', imageTag: 'v2',
    cpuRequest: '150m', cpuLimit: '2', memoryRequest: '512Mi', memoryLimit: '3Gi', imagePullLockEnabled: false, imagePullSecret: 'regcred',
  });
  expect(set.platforms[0]).toMatchObject({ queueTimeoutMs: 5000, startTimeoutMs: 90000 });
});

it('lists the variables it reads: every platform kind\'s, and those of the platforms named', () => {
  const names = configVariableNames(['k8s', 'sim-a']);
  for (const name of ['PORT', 'BOT_TOKEN_SECRET', 'METRICS_PORT', 'K8S_NAMESPACE', 'K8S_START_TIMEOUT_MS', 'SIM_A_BOT_LIMIT', 'SIM_A_QUEUE_TIMEOUT_MS', 'AWS_ECS_CLUSTER', 'COOLIFY_API_TOKEN']) {
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
  expect(loadConfig({ BOT_TOKEN_SECRET: 'bot-token-secret-0123456789', WEBHOOK_SECRET: 'webhook-secret-0123456789' }).webhooks.secret).toBe(
    'webhook-secret-0123456789',
  );
});

it('supports several sim platforms, each with its own limit and timeout', () => {
  const config = loadConfig({ PLATFORM_PRIORITY: 'sim-a, sim-b', SIM_A_BOT_LIMIT: '3', SIM_B_QUEUE_TIMEOUT_MS: '10' });
  expect(config.platforms).toEqual([
    { name: 'sim-a', kind: 'sim', limit: 3, queueTimeoutMs: 30000, startTimeoutMs: 300000 },
    { name: 'sim-b', kind: 'sim', limit: 1000, queueTimeoutMs: 10, startTimeoutMs: 300000 },
  ]);
});

it('reads the seed\'s AWS variables, a start timeout, and Fargate Spot then on-demand Fargate by default', () => {
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
  expect(config.platforms).toEqual([{ name: 'aws', kind: 'aws', limit: 50, queueTimeoutMs: 30000, startTimeoutMs: 120000 }]);
  expect(config.aws).toEqual({
    region: 'us-east-2',
    cluster: 'meeboter-bots',
    subnets: ['subnet-a', 'subnet-b'],
    securityGroups: ['sg-x'],
    assignPublicIp: true,
    taskDefinitions: { 'google-meet': 'meeboter-google-meet-bot', 'microsoft-teams': 'meeboter-microsoft-teams-bot', zoom: 'meeboter-zoom-bot' },
    launchOptions: [{ capacityProvider: 'FARGATE_SPOT' }, { capacityProvider: 'FARGATE' }],
  });
  expect(loadConfig({ ...seed, AWS_ECS_CAPACITY_PROVIDERS: 'FARGATE' }).aws!.launchOptions).toEqual([{ capacityProvider: 'FARGATE' }]);
  expect(loadConfig({ ...seed, AWS_ECS_LAUNCH_TYPE: 'FARGATE' }).aws!.launchOptions).toEqual([{ launchType: 'FARGATE' }]);
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

it('reads WEBHOOK_ALLOWED_HOSTS as host names and address ranges', () => {
  expect(loadConfig({}).webhooks).toMatchObject({ allowedHosts: [], allowedRanges: [] });
  const config = loadConfig({ WEBHOOK_ALLOWED_HOSTS: 'Hooks.Internal.Example, localhost,127.0.0.1, 10.0.0.0/8,fd00::/8' });
  expect(config.webhooks.allowedHosts).toEqual(['hooks.internal.example', 'localhost']);
  expect(config.webhooks.allowedRanges).toEqual([
    { address: '127.0.0.1', prefix: 32, family: 'ipv4' },
    { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
    { address: 'fd00::', prefix: 8, family: 'ipv6' },
  ]);
  expect(fails({ WEBHOOK_ALLOWED_HOSTS: 'localhost,10.0.0.0/33' })).toBe(
    'WEBHOOK_ALLOWED_HOSTS: "10.0.0.0/33" is neither a host name nor an IP address or CIDR range',
  );
  expect(fails({ WEBHOOK_ALLOWED_HOSTS: 'http://localhost' })).toMatch(/^WEBHOOK_ALLOWED_HOSTS: "http:\/\/localhost" is neither/);
});

it("MILO_AUTH_TOKEN, the seed's static bot token, signs the bots' own tokens; beside a different BOT_TOKEN_SECRET it stops startup", () => {
  const seedStyle = loadConfig({ MILO_AUTH_TOKEN: 'your-milo-auth-token' });
  expect(seedStyle).toMatchObject({ botTokenSecret: 'your-milo-auth-token', botTokenSecretGenerated: false });
  expect(loadConfig({ MILO_AUTH_TOKEN: 'same-secret-0123456789', BOT_TOKEN_SECRET: 'same-secret-0123456789' }).botTokenSecret).toBe('same-secret-0123456789');
  expect(fails({ MILO_AUTH_TOKEN: 'milo-auth-token-0123456789', BOT_TOKEN_SECRET: 'bot-token-secret-0123456789' })).toBe(
    "MILO_AUTH_TOKEN: set BOT_TOKEN_SECRET or MILO_AUTH_TOKEN, not both: each signs the bots' own tokens (no static bot token is accepted)",
  );
  expect(fails({ MILO_AUTH_TOKEN: 'short' })).toMatch(/^MILO_AUTH_TOKEN: /);
});
