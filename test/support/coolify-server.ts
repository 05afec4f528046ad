import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import type { UntypedJson } from './fleet';

/**
 * A Coolify API v1 server for tests, written from Coolify's API documentation and observed behaviour: paths
 * under /api/v1, Bearer auth, POST-only start/stop/deploy (GET is a 405 with `Allow: POST`), 422 on unknown
 * body fields, env bulk upserts that are not atomic, deployments moving queued → in_progress → finished or
 * failed, deduplicated deploys answering a deployment uuid that does not exist, JSON error bodies only with
 * `Accept: application/json` (HTML otherwise). Application status follows deployments and stops
 * (`running:unknown`, `exited:unhealthy`), a little after the call, as Coolify's does; `updated_at` moves with
 * every change of the application, its status included.
 *
 * Fault switches: `failDeployments` (the next N deployments fail), `failApplications` (every deployment of
 * these fail), `fail()` (the next N matching requests answer 429 with Retry-After, or 500), `delayMs` (slow
 * answers), `stageMs` (how long each deployment stage takes), `statusLagMs` (how long after a deployment
 * finished its application still reports the status it had: Coolify learns it from periodic server checks),
 * `crash()` (a running container dies).
 * `onRunning` is called with an application's env whenever a deployment of it finished (tests play the bot
 * there); its signal aborts when the application stops.
 */
export interface FakeApplication {
  uuid: string;
  name: string;
  description: string | null;
  status: string;
  fields: Record<string, unknown>;
  envs: Map<string, string>;
  created_at: string;
  updated_at: string;
  running?: AbortController;
}

export interface FakeDeployment {
  deployment_uuid: string;
  application_uuid: string;
  status: 'queued' | 'in_progress' | 'finished' | 'failed';
  created_at: string;
  updated_at: string;
}

interface InjectedFault {
  method?: string;
  path: RegExp;
  status: 429 | 500 | 502 | 503;
  retryAfterSeconds?: number;
  times: number;
}

export interface CoolifyServerOptions {
  token: string;
  onRunning?: (app: FakeApplication, env: Record<string, string>, signal: AbortSignal) => void;
}

const CREATE_FIELDS = [
  'project_uuid',
  'server_uuid',
  'environment_name',
  'environment_uuid',
  'destination_uuid',
  'docker_registry_image_name',
  'docker_registry_image_tag',
  'ports_exposes',
  'name',
  'description',
  'domains',
  'limits_memory',
  'limits_cpus',
  'instant_deploy',
  'autogenerate_domain',
  'health_check_enabled',
  'health_check_path',
  'tags',
];
const PATCH_FIELDS = [
  'name',
  'description',
  'docker_registry_image_name',
  'docker_registry_image_tag',
  'ports_exposes',
  'domains',
  'limits_memory',
  'limits_cpus',
  'instant_deploy',
  'health_check_enabled',
  'health_check_path',
];
const ENV_FIELDS = [
  'key',
  'value',
  'is_preview',
  'is_literal',
  'is_multiline',
  'is_shown_once',
  'is_runtime',
  'is_buildtime',
  'comment',
];
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_.]*$/;

class HttpAnswer {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {}
}
const answer = (status: number, body: unknown, headers?: Record<string, string>) =>
  new HttpAnswer(status, body, headers);
const notAllowed = (fields: Record<string, unknown>, allowed: string[]) => {
  const unknown = Object.keys(fields).filter((key) => !allowed.includes(key));
  if (unknown.length === 0) return null;
  return answer(422, {
    message: 'Validation failed.',
    errors: Object.fromEntries(unknown.map((key) => [key, ['This field is not allowed.']])),
  });
};
const uuid = () => randomBytes(12).toString('hex').slice(0, 24);
const now = () => new Date().toISOString();

export class CoolifyServer {
  readonly applications = new Map<string, FakeApplication>();
  readonly deployments = new Map<string, FakeDeployment>();
  readonly requests: Array<{ method: string; path: string; status: number }> = [];
  failDeployments = 0;
  /** Deployments that finished while the application's previous container still ran. */
  replacedRunning = 0;
  readonly failApplications = new Set<string>();
  delayMs = 0;
  stageMs = 30;
  statusLagMs = 0;
  private faults: InjectedFault[] = [];
  private timers = new Set<NodeJS.Timeout>();
  private server = http.createServer((req, res) => void this.handle(req, res));
  url = '';

  constructor(private readonly options: CoolifyServerOptions) {}

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/api/v1`;
    return this;
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    for (const app of this.applications.values()) app.running?.abort();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  /** The next `times` requests matching `method` and `path` (relative to /api/v1) answer `status`. */
  fail(fault: Omit<InjectedFault, 'times'> & { times?: number }): void {
    this.faults.push({ times: 1, ...fault });
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** The application's container dies: it reports exited, and its bot stops. */
  crash(appUuid: string): void {
    const app = this.applications.get(appUuid);
    if (!app) return;
    app.running?.abort();
    app.running = undefined;
    setStatus(app, 'exited:unhealthy');
  }

  /** Applications whose container runs now. */
  running(): FakeApplication[] {
    return [...this.applications.values()].filter((app) => app.status.startsWith('running'));
  }

  private later(ms: number, fn: () => void) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://coolify');
    const method = req.method ?? 'GET';
    const path = url.pathname.startsWith('/api/v1/') ? url.pathname.slice('/api/v1'.length) : '';
    let result: HttpAnswer;
    try {
      if (this.delayMs) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      result = this.route(req, method, path, url.searchParams, Buffer.concat(chunks).toString('utf8'));
    } catch {
      result = answer(500, { message: 'Server Error' });
    }
    this.requests.push({ method, path: url.pathname + url.search, status: result.status });
    const wantsJson = (req.headers.accept ?? '').includes('application/json');
    if (result.status >= 400 && !wantsJson) {
      // Laravel renders framework errors as HTML unless the client asks for JSON.
      res.writeHead(result.status, { 'content-type': 'text/html; charset=UTF-8', ...result.headers });
      res.end(`<!DOCTYPE html><html><body><h1>${result.status}</h1></body></html>`);
      return;
    }
    res.writeHead(result.status, { 'content-type': 'application/json', ...result.headers });
    res.end(JSON.stringify(result.body));
  }

  private route(
    req: http.IncomingMessage,
    method: string,
    path: string,
    query: URLSearchParams,
    raw: string,
  ): HttpAnswer {
    if (!path) return answer(404, { message: 'Not found.', docs: 'https://coolify.io/docs' });
    if (req.headers.authorization !== `Bearer ${this.options.token}`)
      return answer(401, { message: 'Unauthenticated.' });
    const fault = this.faults.find((f) => (!f.method || f.method === method) && f.path.test(path));
    if (fault) {
      if (--fault.times <= 0) this.faults.splice(this.faults.indexOf(fault), 1);
      if (fault.status === 429) {
        return answer(
          429,
          { message: 'Too Many Attempts.' },
          {
            'retry-after': String(fault.retryAfterSeconds ?? 1),
            'x-ratelimit-limit': '200',
            'x-ratelimit-remaining': '0',
          },
        );
      }
      return answer(fault.status, { message: 'Server Error' });
    }
    let body: Record<string, UntypedJson> = {};
    if (method === 'POST' || method === 'PATCH') {
      if (raw) {
        if (!(req.headers['content-type'] ?? '').includes('application/json')) {
          return answer(400, { message: 'Invalid request.', error: 'Content-Type must be application/json.' });
        }
        try {
          body = JSON.parse(raw);
        } catch {
          return answer(400, { message: 'Invalid request.', error: 'Invalid JSON.' });
        }
      }
    }

    let match: RegExpExecArray | null;
    if (path === '/applications/dockerimage' && method === 'POST') return this.create(body);
    if (path === '/applications' && method === 'GET') return answer(200, [...this.applications.values()].map(view));
    if (path === '/deploy') {
      if (method !== 'POST')
        return answer(405, { message: 'This endpoint has changed to a POST request.' }, { allow: 'POST' });
      return this.deployRequest(query.get('uuid') ?? body.uuid ?? '');
    }
    if ((match = /^\/applications\/([^/]+)\/(start|stop|restart)$/.exec(path))) {
      if (method !== 'POST')
        return answer(405, { message: 'This endpoint has changed to a POST request.' }, { allow: 'POST' });
      const app = this.applications.get(match[1]);
      if (!app) return answer(404, { message: 'Application not found.' });
      if (match[2] === 'stop') return this.stop(app);
      const deployment = this.deploy(app);
      return answer(200, { message: 'Deployment request queued.', deployment_uuid: deployment.deployment_uuid });
    }
    if ((match = /^\/applications\/([^/]+)\/envs\/bulk$/.exec(path)) && method === 'PATCH') {
      const app = this.applications.get(match[1]);
      if (!app) return answer(404, { message: 'Application not found' });
      return this.envs(app, body);
    }
    if ((match = /^\/applications\/([^/]+)$/.exec(path))) {
      const app = this.applications.get(match[1]);
      if (method === 'GET') return app ? answer(200, view(app)) : answer(404, { message: 'Application not found.' });
      if (!app) return answer(404, { message: 'Application not found' });
      if (method === 'PATCH') {
        if (Object.keys(body).length === 0) return answer(400, { message: 'Invalid request.', error: 'Empty JSON.' });
        const refused = notAllowed(body, PATCH_FIELDS);
        if (refused) return refused;
        Object.assign(app.fields, body);
        if (body.name) app.name = body.name;
        if ('description' in body) app.description = body.description;
        app.updated_at = now();
        return answer(200, { uuid: app.uuid });
      }
      if (method === 'DELETE') {
        app.running?.abort();
        this.applications.delete(app.uuid);
        return answer(200, { message: 'Application deletion request queued.' });
      }
    }
    if ((match = /^\/deployments\/applications\/([^/]+)$/.exec(path)) && method === 'GET') {
      if (!this.applications.has(match[1])) return answer(404, { message: 'Application not found' });
      const all = [...this.deployments.values()].filter((d) => d.application_uuid === match![1]).reverse();
      const skip = Number(query.get('skip') ?? 0);
      const take = Number(query.get('take') ?? 10);
      return answer(200, { count: all.length, deployments: all.slice(skip, skip + take) });
    }
    if ((match = /^\/deployments\/([^/]+)$/.exec(path)) && method === 'GET') {
      const deployment = this.deployments.get(match[1]);
      return deployment ? answer(200, deployment) : answer(404, { message: 'Deployment not found.' });
    }
    return answer(404, { message: 'Not found.', docs: 'https://coolify.io/docs' });
  }

  private create(body: Record<string, UntypedJson>): HttpAnswer {
    const refused = notAllowed(body, CREATE_FIELDS);
    if (refused) return refused;
    const required = ['project_uuid', 'server_uuid', 'docker_registry_image_name'].filter((key) => !body[key]);
    if (!body.environment_name && !body.environment_uuid) required.push('environment_name');
    if (required.length) {
      return answer(422, {
        message: 'Validation failed.',
        errors: Object.fromEntries(required.map((key) => [key, [`The ${key} field is required.`]])),
      });
    }
    const app: FakeApplication = {
      uuid: uuid(),
      name: body.name ?? `docker-image-${uuid()}`,
      description: body.description ?? null,
      status: 'exited:unhealthy', // a new, never-deployed application
      fields: { ...body },
      envs: new Map(),
      created_at: now(),
      updated_at: now(),
    };
    this.applications.set(app.uuid, app);
    return answer(201, { uuid: app.uuid, domains: null });
  }

  private envs(app: FakeApplication, body: Record<string, UntypedJson>): HttpAnswer {
    if (!Array.isArray(body.data)) return answer(400, { message: 'Bulk data is required.' });
    const saved: unknown[] = [];
    for (const item of body.data) {
      // Not atomic: items before a bad one stay saved.
      const refused = notAllowed(item, ENV_FIELDS);
      if (refused) return refused;
      if (typeof item.key !== 'string' || !ENV_KEY.test(item.key)) {
        return answer(422, { message: 'Validation failed.', errors: { key: ['The key format is invalid.'] } });
      }
      app.envs.set(item.key, String(item.value ?? ''));
      saved.push({
        uuid: uuid(),
        key: item.key,
        value: String(item.value ?? ''),
        is_runtime: true,
        is_buildtime: true,
      });
    }
    return answer(201, saved);
  }

  private deployRequest(uuids: string): HttpAnswer {
    const found = uuids
      .split(',')
      .map((id) => this.applications.get(id))
      .filter((app): app is FakeApplication => !!app);
    if (found.length === 0) return answer(404, { message: 'No resources found.' });
    const deployments = found.map((app) => {
      const active = [...this.deployments.values()].some(
        (d) => d.application_uuid === app.uuid && (d.status === 'queued' || d.status === 'in_progress'),
      );
      if (active) {
        // Coolify's dedup answer carries a freshly made uuid that was never stored.
        return {
          message: 'Deployment already queued for this commit.',
          resource_uuid: app.uuid,
          deployment_uuid: uuid(),
        };
      }
      const deployment = this.deploy(app);
      return {
        message: `Application ${app.name} deployment queued.`,
        resource_uuid: app.uuid,
        deployment_uuid: deployment.deployment_uuid,
      };
    });
    return answer(200, { deployments });
  }

  private deploy(app: FakeApplication): FakeDeployment {
    const deployment: FakeDeployment = {
      deployment_uuid: uuid(),
      application_uuid: app.uuid,
      status: 'queued',
      created_at: now(),
      updated_at: now(),
    };
    this.deployments.set(deployment.deployment_uuid, deployment);
    const fails = this.failApplications.has(app.uuid) || this.failDeployments > 0;
    if (this.failDeployments > 0) this.failDeployments--;
    this.later(this.stageMs, () => {
      deployment.status = 'in_progress';
      deployment.updated_at = now();
      this.later(this.stageMs, () => {
        deployment.updated_at = now();
        if (fails || !this.applications.has(app.uuid)) {
          deployment.status = 'failed';
          return;
        }
        deployment.status = 'finished';
        // A deployment replaces a container that still runs: for the pool, a second bot on one slot.
        if (app.running && !app.running.signal.aborted) this.replacedRunning++;
        app.running?.abort();
        const running = (app.running = new AbortController());
        const report = () => {
          if (app.running === running) setStatus(app, 'running:unknown');
        };
        if (this.statusLagMs > 0) this.later(this.statusLagMs, report);
        else report();
        this.options.onRunning?.(app, Object.fromEntries(app.envs), running.signal);
      });
    });
    return deployment;
  }

  private stop(app: FakeApplication): HttpAnswer {
    app.running?.abort();
    app.running = undefined;
    // Stopping is queued: the status changes a moment later.
    this.later(this.stageMs, () => {
      if (!app.running) setStatus(app, 'exited:unhealthy');
    });
    return answer(200, { message: 'Application stopping request queued.' });
  }
}

function setStatus(app: FakeApplication, status: string): void {
  if (app.status === status) return; // as Coolify, which writes a status only when it changed
  app.status = status;
  app.updated_at = now();
}

function view(app: FakeApplication) {
  return {
    ...app.fields,
    uuid: app.uuid,
    name: app.name,
    description: app.description,
    status: app.status,
    fqdn: null,
    created_at: app.created_at,
    updated_at: app.updated_at,
  };
}

export async function startCoolifyServer(options: CoolifyServerOptions): Promise<CoolifyServer> {
  return new CoolifyServer(options).start();
}
