/**
 * The /pool page in real Chromium against a real server: a WebSocket encoder
 * finishes one job (its shards show as ready cells with one holder in the
 * heat map), a second one fails its jobs until it is quarantined, and the
 * encoders table and the event list say so. These encoders are fakes over
 * the real protocol (fast, and a failing encoder on demand); the same page
 * with real encoder tabs, byte checks and cross-checks on is in
 * realTabs.test.ts.
 */
import fs from 'node:fs';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/shared/protocol.ts';
import { launchBrowser, newPage, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { BYTELESS } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { fakeHash, WsPeer } from '../harness/wsPeer.ts';

let browser: Browser;
let server: TestServer;
let page: TrackedPage | undefined;
const peers: WsPeer[] = [];
let id: string;

/** Reports every shard of the job with a hash, then the job as done, like an honest tab. */
function finishJob(p: WsPeer, job: Job): void {
  for (const sh of job.shards) {
    const key = { contentId: job.contentId, rendition: job.rendition, index: sh.index };
    p.send({ type: 'shard-ready', jobId: job.id, key, sha256: fakeHash(`${job.contentId}/${job.rendition}/${sh.index}`), size: 20_000 + sh.index });
  }
  p.send({ type: 'job-done', jobId: job.id });
}

beforeAll(async () => {
  browser = await launchBrowser();
  // These fake encoders report made-up hashes and carry no bytes: the byte check and cross-checks are
  // off here (tests/server/trust.test.ts covers them with real shards).
  server = await startTestServer({ quarantineAfterFailures: 2, ...BYTELESS });
  const r = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  id = r.json.id as string;
});

afterAll(async () => {
  for (const p of peers) p.kill();
  await page?.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

describe('/pool', () => {
  it('shows the heat map, the encoders and the events', async () => {
    const good = await WsPeer.encoder(server.url);
    peers.push(good);
    const { job } = await good.next('job');
    finishJob(good, job);
    // The pool answers with the next job, which this encoder keeps open.
    await good.next('job');

    // An encoder whose jobs fail goes to quarantine after two in a row.
    const bad = await WsPeer.encoder(server.url);
    peers.push(bad);
    for (let k = 0; k < 2; k++) {
      const { job: j } = await bad.next('job');
      bad.send({ type: 'job-failed', jobId: j.id, reason: 'test failure' });
    }

    page = await newPage(browser);
    const p = page.page;
    await p.goto(`${server.url}/pool`);

    // Heat map: exactly the finished job's shards are ready, each with one holder (the encoder).
    const heat = p.locator(`[data-testid=content][data-content="${id}"] [data-testid=heatmap]`);
    const readyOne = heat.locator(`[data-rendition="${job.rendition}"] [data-status=ready][data-holders="1"]`);
    await expect.poll(() => readyOne.count(), { timeout: 10_000 }).toBe(job.shards.length);
    expect(await heat.locator('[data-status=ready]').count()).toBe(job.shards.length);
    const first = job.shards[0]!.index;
    expect(await heat.locator(`[data-rendition="${job.rendition}"] [data-status]`).nth(first).getAttribute('title')).toMatch(
      new RegExp(`^shard ${first} ${job.rendition}: ready, 1 holder, \\d+\\.\\d req/s$`),
    );
    // The encoder's next job is in flight.
    expect(await heat.locator('[data-status=encoding]').count()).toBeGreaterThan(0);

    // Encoders table: the honest one encoding, the failing one quarantined with its reason.
    const goodRow = p.locator(`[data-testid=encoder-row][data-peer="${good.peerId}"]`);
    await expect.poll(() => goodRow.getAttribute('data-state')).toBe('encoding');
    expect(await goodRow.textContent()).toMatch(/encoding 1 job/);
    const badRow = p.locator(`[data-testid=encoder-row][data-peer="${bad.peerId}"]`);
    await expect.poll(() => badRow.getAttribute('data-state')).toBe('quarantined');
    expect(await badRow.textContent()).toMatch(/2 jobs in a row failed or timed out.*left/);
    expect(await p.locator('[data-testid=tile-encoders]').textContent()).toMatch(/2\s*encoders.*1 quarantined/);

    // Events, in words.
    const joined = p.locator(`[data-testid=event][data-type=peer-joined]`, { hasText: good.peerId });
    await expect.poll(() => joined.count()).toBe(1);
    expect(await joined.textContent()).toMatch(new RegExp(`encoder ${good.peerId} joined`));
    const quarantined = p.locator('[data-testid=event][data-type=encoder-quarantined]');
    expect(await quarantined.textContent()).toMatch(new RegExp(`encoder ${bad.peerId} quarantined for 2 min: 2 jobs in a row failed`));

    expect(page.problems).toEqual([]);
  });
});
