/**
 * Access control in real Chromium: the /publish page's admin-token field
 * (a clear message on 401 and 403, the token remembered in the browser), and
 * and watch and encode pages joining a pool that needs a join token from
 * their URL.
 */
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, newPage, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
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
    await expect
      .poll(
        () =>
          page
            .getByTestId('result')
            .textContent()
            .catch(() => ''),
        { timeout: 60_000 },
      )
      .toMatch(/Published/);
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

  it('an encode page without the join token shows the refusal and never joins; with ?token= it joins and encodes', async () => {
    const encoders = () => [...server.pool.peers.values()].filter((p) => p.role === 'encoder');
    const logOf = (t: TrackedPage) => t.page.locator('pre.log').textContent();
    for (const [query, code] of [
      ['', 'unauthorized'],
      ['?token=wrong-secret', 'forbidden'],
    ] as const) {
      const before = server.refusals.badJoinToken;
      const t = await newPage(browser);
      pages.push(t);
      await t.page.goto(`${server.url}/encode${query}${query ? '&' : '?'}persist=0&engines=ffmpeg-wasm&benchmark=0`);
      // Refused, and refused again when it retries: it never gets in.
      await waitFor(() => server.refusals.badJoinToken >= before + 2 || undefined, `two refused joins (${code})`, 60_000);
      await expect.poll(() => logOf(t), { timeout: 10_000 }).toMatch(new RegExp(`pool: ${code}: this pool needs a join token`));
      const st = await t.page.evaluate(() => (window as any).shardcastEncoder.state);
      expect(st.peerId).toBeUndefined();
      expect(st.connection).not.toBe('open');
      expect(st.jobsDone + st.jobsFailed).toBe(0);
      expect(encoders()).toHaveLength(0);
      await t.context.close();
    }

    const r = await upload(server.url, fs.readFileSync(await fixture('mov')), '', 'clip.mov');
    expect(r.status).toBe(201);
    const t = await openEncoderTab(browser, `${server.url}/encode?token=join-secret&persist=0&engines=ffmpeg-wasm`);
    pages.push(t);
    const peerId = (await t.page.evaluate(() => (window as any).shardcastEncoder.state.peerId)) as string;
    expect(encoders().map((p) => p.id)).toEqual([peerId]);
    // It encodes: the pool accepts shards of the new content from it (its source slices needed the token too).
    await waitFor(
      () => [...server.pool.holders.entries()].some(([k, set]) => k.startsWith(`${r.json.id}/`) && set.has(peerId)) || undefined,
      'a shard accepted from the token tab',
      120_000,
    );
    expect(await logOf(t)).not.toMatch(/unauthorized|forbidden/);
  }, 240_000);
});
