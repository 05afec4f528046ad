import http from 'node:http';
import { AddressInfo } from 'node:net';
import type { UntypedJson } from './fleet';

/**
 * A plain HTTP proxy in front of moto that makes the ECS answers moto cannot: the next N calls of an action
 * (the `X-Amz-Target` suffix, e.g. `RunTask`) can be answered with a ThrottlingException (400, JSON
 * `__type`, as ECS sends it), a 500, a RunTask `failures[]` answer, or be delayed. It can also hold tasks
 * in PROVISIONING (moto starts every task RUNNING), rewrite fields of a task in DescribeTasks answers (a
 * stopCode moto never sets), and page ListTasks answers (moto returns one page). It counts every call and
 * keeps each request body, so tests can see what the SDK sent and how often.
 */
export type Fault =
  | { kind: 'throttle' }
  | { kind: 'server-error' }
  | { kind: 'failures'; reason: string }
  | { kind: 'delay'; ms: number }
  /** RunTask goes through; the task it starts then reads as PROVISIONING until it is stopped. */
  | { kind: 'provisioning' }
  /** DescribeTasks answers every task asked for as MISSING, as ECS may just after RunTask (eventual consistency). */
  | { kind: 'unseen' };

export interface EcsFaultProxy {
  url: string;
  inject(action: string, fault: Fault, times?: number): void;
  /** Every request of `action` that reached the proxy, faulted or not, as parsed JSON bodies. */
  requests(action: string): UntypedJson[];
  calls(action: string): number;
  /** Merges `fields` into the task `arn` of every DescribeTasks answer from now on. */
  patchTask(arn: string, fields: Record<string, unknown>): void;
  /** Pages ListTasks answers `size` task ARNs at a time (null: as moto answers). */
  pageListTasks(size: number | null): void;
  reset(): void;
  close(): Promise<void>;
}

const TARGET_PREFIX = 'AmazonEC2ContainerServiceV20141113.';
const JSON_TYPE = 'application/x-amz-json-1.1';

export async function startEcsFaultProxy(upstream: string): Promise<EcsFaultProxy> {
  const faults = new Map<string, Fault[]>();
  const seen = new Map<string, UntypedJson[]>();
  const provisioning = new Set<string>();
  const patches = new Map<string, Record<string, unknown>>();
  let pageSize: number | null = null;

  const answer = (res: http.ServerResponse, status: number, body: unknown, errorType?: string) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': JSON_TYPE,
      'content-length': Buffer.byteLength(text),
      ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
    });
    res.end(text);
  };

  const forward = async (req: http.IncomingMessage, body: Buffer) => {
    const headers = { ...req.headers } as Record<string, string>;
    delete headers.host;
    delete headers['content-length'];
    const response = await fetch(upstream + req.url, {
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
    });
    return { status: response.status, headers: response.headers, text: await response.text() };
  };

  /** Rewrites an ECS JSON answer on its way back; anything else passes unchanged. */
  const rewrite = (action: string, request: UntypedJson, text: string): string => {
    if (!['RunTask', 'DescribeTasks', 'ListTasks'].includes(action)) return text;
    const body = JSON.parse(text);
    if (action === 'ListTasks' && pageSize && Array.isArray(body.taskArns)) {
      const start = Number(request.nextToken ?? 0);
      const size = Math.min(pageSize, request.maxResults ?? pageSize);
      body.taskArns = body.taskArns.slice(start, start + size);
      if (start + size < JSON.parse(text).taskArns.length) body.nextToken = String(start + size);
    }
    for (const task of body.tasks ?? []) {
      if (provisioning.has(task.taskArn) && task.lastStatus !== 'STOPPED') task.lastStatus = 'PROVISIONING';
      Object.assign(task, patches.get(task.taskArn));
    }
    return JSON.stringify(body);
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk) => chunks.push(chunk));
    const relay = async () => {
      const body = Buffer.concat(chunks);
      const target = String(req.headers['x-amz-target'] ?? '');
      const action = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : '';
      let request: UntypedJson = {};
      try {
        if (action) request = JSON.parse(body.toString() || '{}');
      } catch {
        // not JSON: forwarded as it is
      }
      if (action) seen.set(action, [...(seen.get(action) ?? []), request]);
      const fault = faults.get(action)?.shift();
      try {
        if (fault?.kind === 'throttle')
          return answer(res, 400, { __type: 'ThrottlingException', message: 'Rate exceeded' }, 'ThrottlingException');
        if (fault?.kind === 'server-error')
          return answer(res, 500, { __type: 'ServerException', message: 'injected server error' }, 'ServerException');
        if (fault?.kind === 'failures') return answer(res, 200, { tasks: [], failures: [{ reason: fault.reason }] });
        if (fault?.kind === 'unseen') {
          return answer(res, 200, {
            tasks: [],
            failures: (request.tasks ?? []).map((arn: string) => ({ arn, reason: 'MISSING' })),
          });
        }
        if (fault?.kind === 'delay') await new Promise((resolve) => setTimeout(resolve, fault.ms));
        const upstreamAnswer = await forward(req, body);
        let text = upstreamAnswer.text;
        if (upstreamAnswer.status === 200 && action) {
          if (fault?.kind === 'provisioning')
            for (const task of JSON.parse(text).tasks ?? []) provisioning.add(task.taskArn);
          text = rewrite(action, request, text);
        }
        const headers: Record<string, string> = {};
        upstreamAnswer.headers.forEach((value, key) => {
          if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(key))
            headers[key] = value;
        });
        res.writeHead(upstreamAnswer.status, { ...headers, 'content-length': Buffer.byteLength(text) });
        res.end(text);
      } catch (error) {
        answer(res, 502, { __type: 'ProxyError', message: String(error) });
      }
    };
    // an answer that fails half-way (its headers already sent) resets the connection
    req.on('end', () => {
      relay().catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    inject(action, fault, times = 1) {
      faults.set(action, [...(faults.get(action) ?? []), ...Array.from({ length: times }, () => fault)]);
    },
    requests: (action) => seen.get(action) ?? [],
    calls: (action) => (seen.get(action) ?? []).length,
    patchTask(arn, fields) {
      patches.set(arn, { ...patches.get(arn), ...fields });
    },
    pageListTasks(size) {
      pageSize = size;
    },
    reset() {
      faults.clear();
      seen.clear();
      provisioning.clear();
      patches.clear();
      pageSize = null;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
