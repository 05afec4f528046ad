import { withRetries } from '../../retry';
import { PlatformError } from '../platform';

/**
 * Coolify API v1 over Node's fetch (the calls the slot pool needs, nothing more). Every request sends
 * `Accept: application/json`, without which Coolify answers framework errors with HTML or redirects. 429,
 * 5xx, network errors and timeouts are retried with jittered backoff, honouring Retry-After; anything else
 * is a CoolifyError at once. The token is only ever put in the Authorization header, never in a message.
 */
export interface CoolifyClientOptions {
  /** `https://<host>/api/v1`. */
  apiUrl: string;
  token: string;
  /** Tries per call for retryable failures. */
  attempts?: number;
  requestTimeoutMs?: number;
}

export interface CoolifyApplication {
  uuid: string;
  name: string;
  description: string | null;
  /** `<state>:<health>`, e.g. `running:unknown`, `exited:unhealthy`. */
  status: string;
  /** When the application last changed, its status included (Coolify writes a status only when it changed). */
  updated_at?: string;
  docker_registry_image_name?: string;
}

export type DeploymentStatus = 'queued' | 'in_progress' | 'finished' | 'failed' | 'cancelled-by-user';

export interface CoolifyDeployment {
  deployment_uuid: string;
  status: DeploymentStatus;
  created_at?: string;
  updated_at?: string;
}

/** A Coolify answer that was not 2xx (status 0: no answer at all). */
export class CoolifyError extends PlatformError {
  override name = 'CoolifyError';
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message, status === 0 || status === 429 || status >= 500);
  }
}

export const isNotFound = (error: unknown) => error instanceof CoolifyError && error.status === 404;

/** A Retry-After of seconds or an HTTP date, capped so a hostile value cannot park a worker. */
function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 120_000) : undefined;
}

/** What Coolify answers a refused call with (`errors`: the invalid fields of a 422). */
interface CoolifyErrorAnswer {
  message?: string;
  errors?: unknown;
}

export function createCoolifyClient(options: CoolifyClientOptions) {
  const base = options.apiUrl.replace(/\/$/, '');
  const once = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${options.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(options.requestTimeoutMs ?? 30_000),
      });
    } catch (error) {
      throw new CoolifyError(0, `coolify ${method} ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // an HTML error page (a proxy in front of Coolify): the status code is what counts
    }
    if (!response.ok) {
      const answer = parsed as CoolifyErrorAnswer | null;
      const detail = answer?.message ?? `HTTP ${response.status}`;
      const errors = answer?.errors ? ` ${JSON.stringify(answer.errors)}` : '';
      throw new CoolifyError(
        response.status,
        `coolify ${method} ${path}: ${response.status} ${detail}${errors}`,
        retryAfterMs(response.headers.get('retry-after')),
      );
    }
    return parsed as T;
  };
  const call = <T>(method: string, path: string, body?: unknown) =>
    withRetries(() => once<T>(method, path, body), {
      attempts: options.attempts ?? 4,
      isRetryable: (error) => error instanceof CoolifyError && error.transient,
      baseMs: 500,
    });
  const app = (uuid: string) => `/applications/${encodeURIComponent(uuid)}`;

  return {
    createDockerImageApplication: (fields: Record<string, unknown>) =>
      call<{ uuid: string }>('POST', '/applications/dockerimage', fields),
    listApplications: async () => {
      const list = await call<CoolifyApplication[]>('GET', '/applications');
      // A list call must never be read as "no applications" unless Coolify really said so.
      if (!Array.isArray(list)) throw new CoolifyError(0, 'coolify GET /applications: the answer is not a list');
      return list;
    },
    getApplication: (uuid: string) => call<CoolifyApplication>('GET', app(uuid)),
    updateApplication: (uuid: string, fields: Record<string, unknown>) =>
      call<{ uuid: string }>('PATCH', app(uuid), fields),
    /** Upserts env variables by key; they apply from the next deployment. */
    setEnvs: (uuid: string, env: Record<string, string>) =>
      call<unknown>('PATCH', `${app(uuid)}/envs/bulk`, {
        data: Object.entries(env).map(([key, value]) => ({ key, value, is_literal: true })),
      }),
    /** Queues a deployment; the uuid it answers may not exist (see followDeployment in the adapter). */
    deploy: async (uuid: string) => {
      const answer = await call<{ deployments?: Array<{ deployment_uuid?: string }> }>(
        'POST',
        `/deploy?uuid=${encodeURIComponent(uuid)}`,
      );
      return answer?.deployments?.[0]?.deployment_uuid ?? null;
    },
    stop: (uuid: string) => call<unknown>('POST', `${app(uuid)}/stop`),
    deleteApplication: (uuid: string) =>
      call<unknown>('DELETE', `${app(uuid)}?delete_configurations=true&delete_volumes=true&docker_cleanup=true`),
    getDeployment: (deploymentUuid: string) =>
      call<CoolifyDeployment>('GET', `/deployments/${encodeURIComponent(deploymentUuid)}`),
    latestDeployment: async (uuid: string) => {
      const answer = await call<{ deployments?: CoolifyDeployment[] }>(
        'GET',
        `/deployments/applications/${encodeURIComponent(uuid)}?skip=0&take=1`,
      );
      return answer?.deployments?.[0] ?? null;
    },
  };
}

export type CoolifyClient = ReturnType<typeof createCoolifyClient>;
