import http from 'node:http';
import { AddressInfo } from 'node:net';

/**
 * A small balancer in front of the API processes, as a Kubernetes Service is: each request goes to the next
 * backend in turn, and one whose connection is refused (a killed process) is skipped for the next. Clients
 * and bots get its one URL. It records every answer's status and time; an answer it made itself because no
 * backend took the connection is recorded as `unreachable`, not as the API's.
 */
export interface Answer {
  at: number;
  status: number;
  method: string;
  path: string;
  backend: string;
}

export interface Balancer {
  readonly url: string;
  /** Every answer of the API, in order. */
  readonly answers: Answer[];
  /** Requests no backend accepted (all were down), by time. */
  readonly unreachable: number[];
  close(): Promise<void>;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

export async function startBalancer(backendPorts: number[]): Promise<Balancer> {
  const answers: Answer[] = [];
  const unreachable: number[] = [];
  let turn = 0;

  const forward = (port: number, req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) =>
    new Promise<boolean>((resolve) => {
      const upstream = http.request(
        { host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent },
        (answer) => {
          const status = answer.statusCode ?? 0;
          answers.push({
            at: Date.now(),
            status,
            method: req.method ?? '',
            path: req.url ?? '',
            backend: String(port),
          });
          res.writeHead(status, answer.headers);
          answer.pipe(res);
          answer.on('error', () => res.destroy());
          resolve(true);
        },
      );
      // Refused (or reset before any answer): the request never reached a live API; try the next backend. A
      // request that reached one and lost it mid-answer is not retried (it may have taken effect): the client
      // sees the connection close, as it would behind a real balancer.
      upstream.on('error', (error: NodeJS.ErrnoException) => {
        if (res.headersSent) return res.destroy();
        resolve(error.code !== 'ECONNREFUSED' ? (res.destroy(), true) : false);
      });
      upstream.end(body);
    });

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const first = turn++ % backendPorts.length;
        for (let i = 0; i < backendPorts.length; i++) {
          if (await forward(backendPorts[(first + i) % backendPorts.length], req, body, res)) return;
        }
        unreachable.push(Date.now());
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end('{"error":{"code":"NO_BACKEND","message":"no API process accepted the connection"}}');
      })();
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    answers,
    unreachable,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
