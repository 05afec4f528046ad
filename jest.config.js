/**
 * Tests run against real Redis and a MongoDB-wire server started once per run (test/global-setup.ts).
 *
 * @kubernetes/client-node 2.x and superjson 2 are ES modules (with a few ES-module dependencies). Node
 * require()s them, which is how the service loads them, but jest's module system does not; so under jest
 * only, those packages are transpiled to CommonJS like our own TypeScript.
 */
const ESM_PACKAGES = [
  'superjson',
  'copy-anything',
  'is-what',
  '@kubernetes/client-node',
  'openid-client',
  'oauth4webapi',
  'jose',
  'jsonpath-plus',
  'rfc4648',
  'socks-proxy-agent',
  'agent-base',
];

module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': 'ts-jest',
    '^.+\\.js$': [
      'ts-jest',
      { tsconfig: { allowJs: true, module: 'commonjs', isolatedModules: true }, diagnostics: false },
    ],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${ESM_PACKAGES.join('|')})/)`],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  testTimeout: 120000,
  // A test that fails with a peer down can leave a client reconnecting; the failure must end the run, not
  // keep jest waiting for that handle until CI's deadline (it did once: 75 minutes).
  forceExit: true,
};
