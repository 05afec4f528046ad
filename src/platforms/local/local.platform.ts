import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { botIdOfDeployment, ContainerStatus, Deployment, DeploySpec, Platform, PlatformError } from '../platform';

/**
 * `local`: one child process per bot, running LOCAL_BOT_COMMAND with the bot env. Each process gets its own
 * process group and a pid file named after the deployment, so it outlives a crashed fleet process and the
 * next one can adopt or stop it. Output goes to `<runDir>/<name>.log`.
 */
export interface LocalPlatformOptions {
  name: string;
  command: string;
  runDir: string;
  /** Grace between SIGTERM and SIGKILL. */
  stopGraceMs?: number;
}

export function createLocalPlatform(options: LocalPlatformOptions): Platform {
  mkdirSync(options.runDir, { recursive: true });
  const pidFile = (name: string) => path.join(options.runDir, `${name}.pid`);
  const grace = options.stopGraceMs ?? 5000;
  /** pid → deployment name, for removing pid files on stop; adopt() also clears stale files. */
  const names = new Map<string, string>();

  const adopt = async (name: string): Promise<Deployment | null> => {
    const file = pidFile(name);
    if (!existsSync(file)) return null;
    const pid = Number(readFileSync(file, 'utf8'));
    if (isAlive(pid)) {
      names.set(String(pid), name);
      return { identifier: String(pid), state: 'running' };
    }
    rmSync(file, { force: true });
    return null;
  };

  return {
    name: options.name,
    adopt,
    async deploy(spec: DeploySpec) {
      const existing = await adopt(spec.name);
      if (existing) return existing;
      const log = openSync(path.join(options.runDir, `${spec.name}.log`), 'a');
      try {
        const child = spawn('/bin/sh', ['-c', options.command], {
          detached: true,
          stdio: ['ignore', log, log],
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...spec.env },
        });
        if (!child.pid) throw new PlatformError(`could not start "${options.command}"`, false);
        writeFileSync(pidFile(spec.name), String(child.pid));
        names.set(String(child.pid), spec.name);
        child.unref();
        return { identifier: String(child.pid), state: 'running' };
      } finally {
        closeSync(log);
      }
    },
    async status(identifier): Promise<ContainerStatus> {
      return { state: isAlive(Number(identifier)) ? 'running' : 'gone' };
    },
    async list() {
      const containers = [];
      for (const file of readdirSync(options.runDir).filter((f) => f.endsWith('.pid'))) {
        const name = file.slice(0, -4);
        const deployment = await adopt(name);
        if (deployment) containers.push({ identifier: deployment.identifier, botId: botIdOfDeployment(name) });
      }
      return containers;
    },
    async stop(identifier) {
      const pid = Number(identifier);
      signalGroup(pid, 'SIGTERM');
      const deadline = Date.now() + grace;
      while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      if (isAlive(pid)) signalGroup(pid, 'SIGKILL');
      while (isAlive(pid)) await new Promise((resolve) => setTimeout(resolve, 20));
      const name = names.get(identifier);
      if (name) rmSync(pidFile(name), { force: true });
      names.delete(identifier);
    },
    async close() {},
  };
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A child of ours that exited but was not reaped yet is a zombie: it holds nothing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true;
  }
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
