/**
 * The watch page in real Chromium against private content and the server
 * cache: it plays with the viewer token from its URL (sent as a bearer header
 * on every read), shows an error without it, and after a variant is replaced
 * (as a cross-check does) a reload plays the new bytes, never the copy of the
 * old variant the browser's HTTP cache still holds. Shards are made by native
 * ffmpeg (tests/harness/realShards.ts) and only the cache serves them.
 */
import fs from 'node:fs';
import type { Browser } from 'playwright';
import { describe, expect, it } from 'vitest';
import type { Job } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { newPage, type TrackedPage } from '../harness/browser.ts';
import { e2eSession } from '../harness/e2eSession.ts';
import { fixture } from '../harness/fixtures.ts';
import { encodeJob } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { completeJob, nativeCaps, replaceVariant } from '../harness/realShards.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { watchToEnd } from '../harness/viewerPage.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const VIEWER = 'viewer-secret';
const JOIN = 'join-secret';
let browser: Browser;
let server: TestServer | undefined;
const pages: TrackedPage[] = [];

e2eSession({ onBrowser: (b) => (browser = b), pages, server: () => server, clearServer: () => (server = undefined) });

describe('watch page, private content and the cache', () => {
  it('plays with the viewer token, refuses without it, and after a variant is replaced plays the new bytes', async () => {
    const s = (server = await startTestServer({ joinToken: JOIN, viewerToken: VIEWER, verifyNewEncoderJobs: 0, verifySampleRate: 0 }));
    const id = (await upload(s.url, new Uint8Array(fs.readFileSync(await fixture('v-23976'))))).json.id as string;
    // A native encoder does every job, then leaves: the cache is the only source.
    const enc = await WsPeer.encoder(s.url, { capabilities: nativeCaps(1), token: JOIN });
    const jobs: Job[] = [];
    const auth = { headers: { Authorization: `Bearer ${VIEWER}` } };
    const map = async () => ((await (await fetch(`${s.url}/api/contents/${id}`, auth)).json()) as { shardMap: ShardMap }).shardMap;
    while ((await map()).shards.some((sh) => Object.values(sh.renditions).some((r) => r.status !== 'ready'))) {
      const { job } = await enc.next('job', () => true, 30_000);
      jobs.push(job);
      await completeJob(s.url, enc, job);
    }
    enc.kill();
    for (const sh of (await map()).shards)
      for (const r of Object.keys(sh.renditions))
        await waitFor(
          async () => (await fetch(`${s.url}/api/contents/${id}/shards/${r}/${sh.index}`, auth)).status === 200 || undefined,
          `${r}/${sh.index} cached`,
        );

    const t = await newPage(browser);
    pages.push(t);
    await t.page.goto(`${s.url}/watch/${id}`);
    await t.page.waitForSelector('[data-state="error"]', { timeout: 30_000 });

    await t.page.goto(`${s.url}/watch/${id}?token=${VIEWER}`);
    const first = await watchToEnd(t);
    expect(first.stats.skipped, 'every shard played').toBe(0);
    expect(first.stats.fromCache).toBeGreaterThan(0);

    // Replace a played shard's variants (every rendition: the next playback may pick another) the way
    // CrossChecks.replaceVariant does; the browser's HTTP cache still holds the old bytes.
    const played = first.video.findIndex((c) => c.source === 'cache');
    for (const job of jobs.filter((j) => j.shards.some((sh) => sh.index === played))) {
      const [bytes] = await encodeJob(s.url, { ...job, shards: job.shards.filter((sh) => sh.index === played) }, 'other');
      const sha256 = replaceVariant(s, { contentId: id, rendition: job.rendition, index: played }, bytes!, enc.peerId);
      const url = `${s.url}/api/contents/${id}/shards/${job.rendition}/${played}?sha256=${sha256}`;
      await waitFor(async () => (await fetch(url, auth)).status === 200 || undefined, 'new variant cached');
    }

    await t.page.reload();
    const second = await watchToEnd(t);
    expect({ hashFailures: second.stats.hashFailures, skipped: second.stats.skipped }).toEqual({ hashFailures: 0, skipped: 0 });
    expect(second.video[played]).toMatchObject({ source: 'cache', status: 'appended' });
  }, 180_000);
});
