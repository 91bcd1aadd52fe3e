/**
 * Access control in real Chromium: the /publish page's admin-token field
 * (a clear message on 401 and 403, the token remembered in the browser), and
 * a watch page joining a pool that needs a join token from its URL.
 */
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, newPage, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { startTestServer, TEST_ADMIN_TOKEN, upload, type TestServer } from '../harness/testServer.ts';
import { waitFor } from '../harness/poolKit.ts';
import fs from 'node:fs';

let browser: Browser;
let server: TestServer;
const pages: TrackedPage[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
  server = await startTestServer({ joinToken: 'join-secret' });
});

afterAll(async () => {
  for (const p of pages) await p.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

describe('access from the pages', () => {
  it('/publish asks for the admin token, says when it is wrong, and remembers it', async () => {
    const t = await newPage(browser);
    pages.push(t);
    const { page } = t;
    await page.goto(`${server.url}/publish`);
    await page.getByTestId('file').setInputFiles(await fixture('av-2997'));
    await page.getByTestId('upload').click();
    await expect.poll(() => page.getByTestId('error').textContent(), { timeout: 30_000 }).toMatch(/needs the admin token/);

    await page.getByTestId('token').fill('wrong-token');
    await page.getByTestId('upload').click();
    await expect.poll(() => page.getByTestId('error').textContent(), { timeout: 30_000 }).toMatch(/admin token is wrong/);

    await page.getByTestId('token').fill(TEST_ADMIN_TOKEN);
    await page.getByTestId('upload').click();
    await expect.poll(() => page.getByTestId('result').textContent().catch(() => ''), { timeout: 60_000 }).toMatch(/Published/);
    expect(server.store.all()).toHaveLength(1);

    await page.reload();
    expect(await page.getByTestId('token').inputValue()).toBe(TEST_ADMIN_TOKEN);
  }, 120_000);

  it('a watch page joins a pool that needs a join token with ?token=, and not without', async () => {
    const r = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    expect(r.status).toBe(201);
    const before = server.refusals.badJoinToken;
    const without = await newPage(browser);
    pages.push(without);
    await without.page.goto(`${server.url}/watch/${r.json.id}`);
    await waitFor(() => server.refusals.badJoinToken > before || undefined, 'refused join', 30_000);
    expect([...server.pool.peers.values()].filter((p) => p.role === 'viewer')).toHaveLength(0);

    const withToken = await newPage(browser);
    pages.push(withToken);
    await withToken.page.goto(`${server.url}/watch/${r.json.id}?token=join-secret`);
    await waitFor(() => [...server.pool.peers.values()].some((p) => p.role === 'viewer') || undefined, 'viewer joined', 30_000);
  }, 120_000);
});
