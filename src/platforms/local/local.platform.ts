import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { logger } from '../../logger';
import {
  botIdOfDeployment,
  ContainerStatus,
  Deployment,
  DeploySpec,
  ListedContainer,
  Platform,
  PlatformError,
} from '../platform';

/**
 * `local`: one child process per bot, running LOCAL_BOT_COMMAND with the bot env. Each process gets its own
 * process group and a pid file named after the deployment, so it outlives a crashed fleet process and the
 * next one on the same host can adopt or stop it. Output goes to `<runDir>/<name>.log`.
 *
 * Processes exist only on the machine that started them, so a deployment belongs to a host: its identifier
 * is `<pid>@<host>`, and before spawning, the host is recorded in Redis under the deployment name. A worker
 * on another host answers `elsewhere` for it and never judges or stops it; only its own host does. The pid
 * file also names the fleet, so fleets sharing a run directory never see each other's processes.
 *
 * A pid outlives its process: after the bot exited, or after a reboot, the same number may name any other
 * process (a daemon leads its own process group, so a group signal would reach all of it). The pid file
 * therefore also records the boot and the process's start time (Linux /proc), and a file whose process no
 * longer matches them is stale: never adopted, judged or signalled.
 *
 * Only its own host may stop a process, so every worker keeps a liveness lease for its host in Redis,
 * renewed every `leaseRenewMs` and lapsing `hostGoneAfterMs` after the last renewal. While it lives, another
 * host's deployment answers `elsewhere` (an ended bot's capacity stays held for that host to stop it); once it
 * lapsed the host counts as gone for good, its processes with it, and its deployments as nothing running
 * (docs/invariants.md). A host that comes back renews its lease, and its reconciliation stops what survived.
 */
export interface LocalPlatformOptions {
  name: string;
  command: string;
  runDir: string;
  fleetId: string;
  hostId: string;
  redis: Redis;
  /** Namespace of the host records (the fleet's Redis prefix). */
  prefix: string;
  /** How often this host's liveness lease is renewed. */
  leaseRenewMs: number;
  /** How long after its last renewal a host's lease lapses, and the host counts as gone. */
  hostGoneAfterMs: number;
  /** Grace between SIGTERM and SIGKILL. */
  stopGraceMs?: number;
  /** How long stop() waits after SIGKILL for the whole process group to be gone. */
  killWaitMs?: number;
}

interface PidFile {
  pid: number;
  fleet: string;
  host: string;
  /** /proc/sys/kernel/random/boot_id when it was started (absent where there is no /proc). */
  boot?: string;
  /** The process's start time, in clock ticks after boot (/proc/<pid>/stat field 22). */
  startedAt?: string;
}

export function createLocalPlatform(options: LocalPlatformOptions): Platform {
  mkdirSync(options.runDir, { recursive: true });
  const pidFile = (name: string) => path.join(options.runDir, `${name}.pid`);
  const hostsKey = `${options.prefix}:local:${options.name}:hosts`;
  const grace = options.stopGraceMs ?? 5000;
  const killWait = options.killWaitMs ?? 10_000;
  const identifierOf = (pid: number) => `${pid}@${options.hostId}`;
  const leaseKey = (host: string) => `${options.prefix}:local:${options.name}:host-lease:${host}`;
  const renewLease = () =>
    options.redis.set(leaseKey(options.hostId), '1', 'PX', options.hostGoneAfterMs).catch((error: unknown) =>
      // tried again at the next renewal; the lease lapses only after hostGoneAfterMs without one
      logger.warn('local host lease not renewed', { hostId: options.hostId, error: String(error) }),
    );
  void renewLease();
  const leaseTimer = setInterval(() => void renewLease(), options.leaseRenewMs);
  leaseTimer.unref();

  const readPidFile = (name: string): PidFile | null => {
    try {
      const parsed = JSON.parse(readFileSync(pidFile(name), 'utf8')) as PidFile;
      return parsed.fleet === options.fleetId ? parsed : null;
    } catch {
      return null;
    }
  };

  /** This host's running process for `name`, clearing a stale pid file on the way. */
  const adoptHere = (name: string): Deployment | null => {
    const file = readPidFile(name);
    if (!file) return null;
    if (runs(file)) return { identifier: identifierOf(file.pid), state: 'running' };
    rmSync(pidFile(name), { force: true });
    return null;
  };

  const adopt = async (name: string): Promise<Deployment | null> => {
    const here = adoptHere(name);
    if (here) return here;
    const host = await options.redis.hget(hostsKey, name);
    if (!host || host === options.hostId) return null;
    // A host whose lease lapsed is gone for good, and its processes with it.
    return (await options.redis.exists(leaseKey(host))) ? { identifier: `?@${host}`, state: 'elsewhere' } : null;
  };

  /** Deployment names of every pid file in the run directory, any fleet's: readPidFile() keeps only ours. */
  const pidFileNames = () =>
    readdirSync(options.runDir)
      .filter((f) => f.endsWith('.pid'))
      .map((f) => f.slice(0, -4));
  /**
   * This fleet's pid files recording `pid`: the one whose process still runs, if any, and the stale ones (a
   * file from before a reboot may record the pid a live bot has now).
   */
  const pidFilesOf = (pid: number) => {
    let live: string | null = null;
    const stale: string[] = [];
    for (const name of pidFileNames()) {
      const file = readPidFile(name);
      if (file?.pid !== pid) continue;
      if (!runs(file)) stale.push(name);
      else live ??= name;
    }
    return { live, stale };
  };

  const parse = (identifier: string) => {
    const at = identifier.lastIndexOf('@');
    return { pid: Number(identifier.slice(0, at)), host: identifier.slice(at + 1) };
  };

  return {
    name: options.name,
    stopsOnlyWhereDeployed: true,
    adopt,
    async deploy(spec: DeploySpec) {
      const existing = await adopt(spec.name);
      if (existing) return existing;
      // Claimed for this host before anything runs: a re-run on another host then answers `elsewhere`.
      await options.redis.hset(hostsKey, spec.name, options.hostId);
      const log = openSync(path.join(options.runDir, `${spec.name}.log`), 'a');
      try {
        const child = spawn('/bin/sh', ['-c', options.command], {
          detached: true,
          stdio: ['ignore', log, log],
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...spec.env },
        });
        if (!child.pid) throw new PlatformError(`could not start "${options.command}"`, false);
        const record: PidFile = {
          pid: child.pid,
          fleet: options.fleetId,
          host: options.hostId,
          boot: currentBoot() ?? undefined,
          startedAt: startTimeOf(child.pid) ?? undefined,
        };
        writeFileSync(pidFile(spec.name), JSON.stringify(record));
        child.unref();
        return { identifier: identifierOf(child.pid), state: 'running' };
      } finally {
        closeSync(log);
      }
    },
    // status and list read the run directory synchronously; inside a promise's executor a failed read (the
    // directory gone) still rejects, as it does on every other platform, rather than throwing at the caller.
    status(identifier) {
      return new Promise<ContainerStatus>((resolve) => {
        const { pid, host } = parse(identifier);
        if (host !== options.hostId) return resolve({ state: 'elsewhere', detail: `runs on host ${host}` });
        // Only through its pid file: a bare pid may name anyone's process by now.
        resolve({ state: pidFilesOf(pid).live ? 'running' : 'gone' });
      });
    },
    list() {
      return new Promise<ListedContainer[]>((resolve) => {
        const containers = [];
        for (const name of pidFileNames()) {
          const deployment = adoptHere(name);
          if (deployment) containers.push({ identifier: deployment.identifier, botId: botIdOfDeployment(name) });
        }
        resolve(containers);
      });
    },
    async stop(identifier) {
      const { pid, host } = parse(identifier);
      // Another host's process is stopped by that host's own reconciliation once its bot has ended.
      if (host !== options.hostId) return;
      // Only a process of this fleet, found through its own pid file; anything else is not ours to signal.
      const { live, stale } = pidFilesOf(pid);
      // Gone already (the pid may name another process by now): only the file goes, as adopt() drops it.
      for (const name of stale) rmSync(pidFile(name), { force: true });
      if (!live) return;
      signalGroup(pid, 'SIGTERM');
      await waitUntil(() => !groupAlive(pid), grace);
      if (groupAlive(pid)) {
        signalGroup(pid, 'SIGKILL');
        await waitUntil(() => !groupAlive(pid), killWait);
        if (groupAlive(pid)) throw new PlatformError(`process group ${pid} survived SIGKILL for ${killWait} ms`, true);
      }
      rmSync(pidFile(live), { force: true });
      await options.redis.hdel(hostsKey, live);
    },
    close() {
      clearInterval(leaseTimer);
      return Promise.resolve();
    },
  };
}

async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
}

/** Whether the process a pid file names still runs: the same boot, the same process, and its group alive. */
function runs(file: PidFile): boolean {
  const boot = currentBoot();
  if (file.boot && boot && file.boot !== boot) return false;
  // A leader that exited leaves no stat; its pid cannot be reused while its group's members keep it.
  const startedAt = startTimeOf(file.pid);
  if (file.startedAt && startedAt && file.startedAt !== startedAt) return false;
  return groupAlive(file.pid);
}

function currentBoot(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot; null without it. */
function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * True while any process of the group led by `pid` runs: the bot's command may have children of its own,
 * and capacity is only free once every one of them has exited. Zombies hold nothing and do not count.
 */
function groupAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(-pid, 0);
  } catch {
    return processAlive(pid);
  }
  return groupMembers(pid).some((member) => processAlive(member));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return false;
  }
}

/** Members of process group `pgid`, read from /proc (field 5 of /proc/<pid>/stat is the group). */
function groupMembers(pgid: number): number[] {
  if (!existsSync('/proc')) return [pgid];
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid) members.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return members;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}
