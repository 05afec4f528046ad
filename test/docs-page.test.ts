import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Browser } from 'playwright-core';
import { ROUTES } from '../src/api/routes';
import { launchChromium } from './support/browser';
import { startTestFleet, TestFleet } from './support/fleet';

/**
 * The reference page at /docs: Swagger UI served from the npm package (no CDN), under helmet's
 * Content-Security-Policy. Its assets load, and in a real browser (Debian's chromium with playwright-core) it
 * shows one operation per route of the route table, with nothing refused by the policy and no request
 * leaving the fleet. A screenshot is kept in test/artifacts/.
 */
jest.setTimeout(120_000);

const ARTIFACTS = path.resolve(__dirname, 'artifacts');
let t: TestFleet;
let browser: Browser;

beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim' }, { api: true, workers: false });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await t.close();
});

it('is an HTML page, without credentials, whose every asset loads from the fleet itself', async () => {
  const page = await fetch(`${t.url}/docs`);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toMatch(/^text\/html/);
  expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
  const html = await page.text();
  const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]);
  expect(assets.length).toBeGreaterThanOrEqual(4);
  const types: Record<string, RegExp> = { js: /javascript/, css: /^text\/css/, png: /^image\/png/ };
  for (const asset of assets) {
    expect(asset).toMatch(/^\/docs\//); // no CDN, no other host
    const res = await fetch(`${t.url}${asset}`);
    expect([asset, res.status]).toEqual([asset, 200]);
    expect(res.headers.get('content-type')).toMatch(types[asset.split('.').pop()!]);
  }
  // only the page's own assets: the package's other files (its demo index.html) are not served
  expect((await fetch(`${t.url}/docs/index.html`)).status).toBe(404);
});

it('shows every operation in a browser, with nothing refused by the Content-Security-Policy', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const refused: string[] = [];
  const elsewhere: string[] = [];
  const failed: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) refused.push(message.text());
  });
  page.on('request', (request) => {
    if (!request.url().startsWith(t.url) && !request.url().startsWith('data:')) elsewhere.push(request.url());
  });
  page.on('requestfailed', (request) => failed.push(`${request.url()} ${request.failure()?.errorText}`));
  page.on('response', (response) => {
    if (response.status() >= 400) failed.push(`${response.url()} ${response.status()}`);
  });
  await page.goto(`${t.url}/docs`);
  await page.locator('.opblock').first().waitFor({ timeout: 30_000 });
  expect(await page.locator('.opblock').count()).toBe(ROUTES.length);
  for (const [method, route] of ROUTES) {
    const shown = route.replace(/:(\w+)/g, '{$1}');
    const block = page.locator(`.opblock-${method}`).filter({ has: page.locator(`[data-path="${shown}"]`) });
    expect([method, route, await block.count()]).toEqual([method, route, 1]);
  }
  expect(await page.locator('.info .title').textContent()).toContain('meeboter');
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'docs-page.png'), fullPage: true });
  expect({ refused, elsewhere, failed }).toEqual({ refused: [], elsewhere: [], failed: [] });
  await context.close();
});
