import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Browser } from 'playwright-core';
import { launchChromium } from './support/browser';
import { meetings, startTestFleet, TestFleet } from './support/fleet';

/**
 * The live fleet page in a real browser (Debian's chromium driven by playwright-core): a bot created through
 * the API appears on the page and reaches ENDED there without a reload. A screenshot is kept in
 * test/artifacts/ for people to look at.
 */
jest.setTimeout(120_000);

const ADMIN = 'admin-key-fleet-page-0123456789';
const ARTIFACTS = path.resolve(__dirname, 'artifacts');
let t: TestFleet;
let browser: Browser;

beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim', SIM_BOT_LIMIT: '3', ADMIN_API_KEY: ADMIN });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await t.close();
});

it('is closed without the admin key', async () => {
  expect((await fetch(`${t.url}/ui`)).status).toBe(401);
  expect((await fetch(`${t.url}/ui/fleet.json`, { headers: { authorization: `Bearer ${t.apiKey}` } })).status).toBe(
    401,
  );
});

it('shows a bot created through the API, live, until it has ENDED', async () => {
  const context = await browser.newContext({ httpCredentials: { username: 'admin', password: ADMIN } });
  const page = await context.newPage();
  await page.goto(`${t.url}/ui`);
  await page.locator('#platforms tr[data-platform="sim"]').waitFor();

  const created = await t.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '1500' } },
  });
  const row = page.locator(`#bots tr[data-bot="${created.body.id}"]`);
  await row.waitFor({ timeout: 30_000 });
  await row.locator('.status-ENDED').waitFor({ timeout: 60_000 });
  expect(await row.locator('.status').textContent()).toBe('ENDED COMPLETED');
  expect(await page.locator('#platforms tr[data-platform="sim"] td').nth(1).textContent()).toMatch(/^\d+ \/ 3$/);

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'fleet-page.png'), fullPage: true });
  await context.close();
});
