import http from 'node:http';

export interface ServedHttp {
  server: http.Server;
  /** The port listened on (useful with port 0). */
  port: number;
  /**
   * Stops accepting connections, lets the requests in flight finish (10 s at most), then closes the
   * keep-alive connections that bots and clients hold open.
   */
  close: () => Promise<void>;
}

/** Listens on `port` with `handler` (the API's Express app, or a worker's /metrics). */
export async function serveHttp(handler: http.RequestListener, port: number): Promise<ServedHttp> {
  const server = http.createServer(handler);
  // Longer than the idle timeout of the usual load balancers, so they never reuse a connection we closed.
  server.keepAliveTimeout = 65_000;
  let inFlight = 0;
  server.on('request', (_req, res) => {
    inFlight++;
    res.once('close', () => inFlight--);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, resolve);
  });
  return {
    server,
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        const deadline = Date.now() + 10_000;
        server.close(() => resolve());
        const check = setInterval(() => {
          if (inFlight > 0 && Date.now() < deadline) return;
          clearInterval(check);
          server.closeAllConnections();
        }, 20);
      }),
  };
}
