/**
 * Is ffmpeg.wasm (single-thread core) deterministic? The same file is
 * published twice, so both contents get identical jobs (same source slices,
 * same parameters); two real encoder tabs share the work of both, so the pairs
 * compared come from the same tab run twice and from different tabs. Every
 * shard of every rendition must hash the same in both contents: the pool's
 * cross-checks (signaling/policy/Trust.ts) compare hashes and rely on this.
 */
import fs from 'node:fs';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let browser: Browser;
let server: TestServer;
const pages: TrackedPage[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
  // Cross-checks off: this test looks at the encoders alone, not at the pool's verification.
  server = await startTestServer({ verifySampleRate: 0, verifyNewEncoderJobs: 0 });
});
afterAll(async () => {
  for (const p of pages.splice(0)) await p.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

async function openEncoder(): Promise<TrackedPage> {
  // ffmpeg.wasm alone: this test is about its determinism.
  const t = await openEncoderTab(browser, `${server.url}/encode?persist=0&engines=ffmpeg-wasm`);
  pages.push(t);
  return t;
}

async function waitReady(id: string, timeoutMs = 280_000): Promise<ShardMap> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end)
      throw new Error(`content ${id} not encoded in time (status ${c.status}); page errors: ${pages.flatMap((p) => p.problems).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('ffmpeg.wasm determinism', () => {
  it('identical jobs give byte-identical shards, across tabs and across runs in one tab', async () => {
    const file = fs.readFileSync(await fixture('av-2997'));
    // Which tab encoded what: the pool's acceptance events name the encoder.
    const by = new Map<string, string>();
    server.pool.on('shard-accepted', (d) => by.set(`${d.key.contentId}/${d.key.rendition}/${d.key.index}`, d.peerId));
    const first = (await upload(server.url, file)).json.id as string;
    const second = (await upload(server.url, file)).json.id as string;
    await openEncoder();
    await openEncoder();
    const a = await waitReady(first);
    const b = await waitReady(second);
    let compared = 0;
    let acrossTabs = 0;
    const differing: string[] = [];
    for (const r of a.renditions) {
      for (const s of a.shards) {
        const x = s.renditions[r.id];
        const y = b.shards[s.index]!.renditions[r.id];
        if (!x) continue;
        compared++;
        if (x.sha256 !== y?.sha256 || x.size !== y?.size) differing.push(`${r.id}/${s.index}`);
        const pa = by.get(`${first}/${r.id}/${s.index}`);
        const pb = by.get(`${second}/${r.id}/${s.index}`);
        if (pa && pb && pa !== pb) acrossTabs++;
      }
    }
    expect(compared).toBeGreaterThan(60);
    expect(differing).toEqual([]);
    // The comparison covered shards made by different tabs, not only one tab twice.
    expect(acrossTabs).toBeGreaterThan(0);
    for (const p of pages) expect(p.problems).toEqual([]);
  });
});
