import http from 'node:http';
import { AddressInfo } from 'node:net';

/**
 * Receives the bots' webhooks: per event id (`X-Meeboter-Event-Id`), how often it came and every distinct
 * body it came with. It always answers 200: the run checks delivery, not the retry policy.
 */
export interface Delivery {
  botId: string;
  status: string;
  count: number;
  bodies: Set<string>;
}

export interface WebhookReceiver {
  /** The bots' callback URL, on loopback, which the fleet is told to allow (`WEBHOOK_ALLOWED_HOSTS`). */
  readonly callbackUrl: string;
  readonly deliveries: Map<string, Delivery>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const deliveries = new Map<string, Delivery>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const eventId = String(req.headers['x-meeboter-event-id'] ?? '');
      try {
        const { data } = JSON.parse(body) as { data: { bot: { id: string; status: string } } };
        const delivery = deliveries.get(eventId) ?? {
          botId: data.bot.id,
          status: data.bot.status,
          count: 0,
          bodies: new Set<string>(),
        };
        delivery.count++;
        delivery.bodies.add(body);
        deliveries.set(eventId, delivery);
      } catch {
        // not a webhook of ours: answered all the same, and not counted
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    callbackUrl: `http://127.0.0.1:${port}/hooks`,
    deliveries,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
