import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, stopper } from '../../src/peers';
import { NetworkPaths, PeerFault } from './platform-peer';

/**
 * Network paths through Toxiproxy (Shopify's TCP proxy, built by `scripts/provision.sh --test` into a cache
 * directory named by its version): each path is a proxy on a free loopback port in front of its upstream, and
 * its faults are Toxiproxy's toxics, added when a fault begins and removed when it ends. The server is driven
 * through its HTTP API.
 */
export const TOXIPROXY_VERSION = 'v2.5.0';
/** Where the binary is: `MEEBOTER_TOXIPROXY_BIN` (a directory), else the cache provisioning builds it into. */
export function toxiproxyServerBinary(): string {
  const dir =
    process.env.MEEBOTER_TOXIPROXY_BIN ??
    path.join(
      process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'),
      `meeboter/toxiproxy-${TOXIPROXY_VERSION}/bin`,
    );
  return path.join(dir, 'toxiproxy-server');
}

/** How hard each fault of a path hits. */
export interface ToxicSettings {
  /** Added to every answer, give or take `jitterMs`. */
  latencyMs: number;
  jitterMs: number;
  /** `timeout`: nothing passes, and each connection is closed after this long (0: held open until the end). */
  timeoutMs: number;
  /** `bandwidth`: answers flow at this many KB/s. */
  bandwidthKbps: number;
}

export const DEFAULT_TOXICS: ToxicSettings = { latencyMs: 400, jitterMs: 200, timeoutMs: 5000, bandwidthKbps: 8 };

/** Toxiproxy's paths plus where its API listens and its server's process (the tests look at both). */
export interface ToxiproxyPaths extends NetworkPaths {
  apiUrl: string;
  pid: number;
}

export async function startToxiproxy(dir: string, settings: Partial<ToxicSettings> = {}): Promise<ToxiproxyPaths> {
  const binary = toxiproxyServerBinary();
  if (!existsSync(binary)) {
    throw new Error(`toxiproxy-server not found at ${binary}: run \`bash scripts/provision.sh --test\``);
  }
  const toxics = { ...DEFAULT_TOXICS, ...settings };
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const log = openSync(path.join(dir, 'toxiproxy.log'), 'a');
  const child = spawn(binary, ['-host', '127.0.0.1', '-port', String(port)], {
    stdio: ['ignore', log, log],
  });
  const apiUrl = `http://127.0.0.1:${port}`;
  const api = async (method: string, route: string, body?: unknown): Promise<void> => {
    const response = await fetch(`${apiUrl}${route}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`toxiproxy ${method} ${route}: ${response.status} ${text}`);
  };
  try {
    await waitForApi(child, () => api('GET', '/version'));
  } catch (error) {
    await stopper(child)();
    throw error;
  }

  let toxicCount = 0;
  /** A fault that adds one toxic of `type` to the path and removes it at its end. */
  const toxicFault = (name: string, kind: string, type: string, attributes: Record<string, number>): PeerFault => ({
    kind: `${name}:${kind}`,
    async begin() {
      const toxic = `${kind}-${++toxicCount}`;
      await api('POST', `/proxies/${name}/toxics`, {
        name: toxic,
        type,
        stream: 'downstream',
        toxicity: 1,
        attributes,
      });
      return () => api('DELETE', `/proxies/${name}/toxics/${toxic}`);
    },
  });
  const opened = new Set<string>();

  return {
    apiUrl,
    pid: child.pid!,
    async open(name, upstream) {
      const listen = `127.0.0.1:${await freePort()}`;
      await api('POST', '/proxies', { name, listen, upstream, enabled: true });
      opened.add(name);
      return listen;
    },
    faultsOf(name) {
      if (!opened.has(name)) throw new Error(`toxiproxy: no path named ${name} was opened`);
      return [
        toxicFault(name, 'latency', 'latency', { latency: toxics.latencyMs, jitter: toxics.jitterMs }),
        toxicFault(name, 'timeout', 'timeout', { timeout: toxics.timeoutMs }),
        toxicFault(name, 'reset', 'reset_peer', { timeout: 0 }),
        toxicFault(name, 'bandwidth', 'bandwidth', { rate: toxics.bandwidthKbps }),
        {
          // The proxy stops listening and drops its connections: the upstream is unreachable.
          kind: `${name}:down`,
          async begin() {
            await api('POST', `/proxies/${name}`, { enabled: false });
            return () => api('POST', `/proxies/${name}`, { enabled: true });
          },
        },
      ];
    },
    close: stopper(child),
  };
}

async function waitForApi(child: ChildProcess, ask: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`toxiproxy-server exited with code ${child.exitCode}`);
    try {
      await ask();
      return;
    } catch (error) {
      if (Date.now() > deadline)
        throw new Error(`toxiproxy-server's API did not answer within 30 s: ${String(error)}`, { cause: error });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
