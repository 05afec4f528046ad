import { request } from 'undici';

/** The run's client of the fleet's API (through the balancer), as a customer's program would call it. */
export interface ApiAnswer<Body = unknown> {
  status: number;
  body: Body;
}

export interface ApiClient {
  call<Body = unknown>(
    method: 'GET' | 'POST' | 'DELETE',
    route: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<ApiAnswer<Body>>;
}

export function apiClient(url: string, apiKey: string, timeoutMs = 15_000): ApiClient {
  return {
    async call<Body>(method: 'GET' | 'POST' | 'DELETE', route: string, body?: unknown, headers = {}) {
      const response = await request(url + route, {
        method,
        headers: {
          authorization: `Bearer ${apiKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const text = await response.body.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: kept as text
      }
      return { status: response.statusCode, body: parsed as Body };
    },
  };
}

/** Calls until an answer below 500 arrives (a network error or a 5xx is tried again), up to `deadlineMs`. */
export async function callUntilAnswered<Body>(
  client: ApiClient,
  deadlineMs: number,
  ...args: Parameters<ApiClient['call']>
): Promise<ApiAnswer<Body> | null> {
  for (let delay = 200; Date.now() < deadlineMs; delay = Math.min(delay * 2, 3000)) {
    try {
      const answer = await client.call<Body>(...args);
      if (answer.status < 500) return answer;
    } catch {
      // no answer: tried again
    }
    await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random() / 2)));
  }
  return null;
}

/**
 * Runs `task` over `items` with at most `concurrency` in flight, keeping the items' order in the answer. The
 * run's reads after the load (a GET or two per bot, thousands of bots in an hour) would take longer than the
 * run itself one at a time.
 */
export async function mapConcurrently<Item, Result>(
  items: readonly Item[],
  concurrency: number,
  task: (item: Item) => Promise<Result>,
): Promise<Result[]> {
  const results = new Array<Result>(items.length);
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (next < items.length && !failed) {
      const index = next++;
      try {
        results[index] = await task(items[index]);
      } catch (error) {
        failed = true; // the other lanes stop taking items: the answer is this error
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
  return results;
}
