/**
 * A cheater among real encoder tabs: a Node-side encoder over the real
 * WebSocket claims the tabs' engine (ffmpeg.wasm) and answers its jobs with
 * structurally valid shards of black pictures (made by native ffmpeg with the
 * tab's command line), which pass the server's structure check. The tabs'
 * cross-checks catch it: it is quarantined, its shards are taken back and
 * encoded again, and the tabs, which agree with each other, are not blamed.
 */
import fs from 'node:fs';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FFMPEG_CORE_BUILD } from '../../src/encoder/FfmpegEngine.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { nativeEncoder } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let browser: Browser;
let server: TestServer;
const pages: TrackedPage[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
  server = await startTestServer({});
});
afterAll(async () => {
  for (const p of pages.splice(0)) await p.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

async function openEncoder(): Promise<TrackedPage> {
  // ffmpeg.wasm alone: the engine cross-checks compare (WebCodecs is not known to be deterministic).
  const t = await openEncoderTab(browser, `${server.url}/encode?persist=0&engines=ffmpeg-wasm`);
  pages.push(t);
  return t;
}

describe('cheater detection among real tabs', () => {
  it('a cheater claiming ffmpeg.wasm is caught by tabs cross-checking it, quarantined, and its shards re-encoded', async () => {
    const ladder = encodeURIComponent(JSON.stringify([{ id: 'v', video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 } }]));
    const id = (await upload(server.url, fs.readFileSync(await fixture('v-23976')), `?renditions=${ladder}`)).json.id as string;
    const passed: string[] = [];
    const convicted: string[] = [];
    server.pool.on('check-passed', (e) => passed.push(e.origin));
    server.pool.on('encoder-convicted', (e) => convicted.push(e.peerId));
    // The cheater claims the tabs' own engine and build (what their shard-ready messages say).
    const cheater = await nativeEncoder(server.url, 'black', `ffmpeg-wasm@${FFMPEG_CORE_BUILD}/veryfast`);
    await waitFor(() => cheater.jobs >= 1 || undefined, 'the cheater at work', 60_000);
    const tabs = [await openEncoder(), await openEncoder()];
    const map = await waitFor(
      async () => {
        const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
        return c.status === 'ready' && server.pool.checks.length === 0 && server.pool.jobs.size === 0 ? c.shardMap : undefined;
      },
      'content encoded and every check settled',
      280_000,
    );
    expect([...new Set(convicted)]).toEqual([cheater.peer.peerId]);
    expect(server.pool.health.isQuarantined(cheater.peer.peerId)).toBe(true);
    // None of the cheater's bytes is accepted or offered any more.
    for (const s of map.shards) expect(s.renditions.v!.sha256).not.toBe(cheater.made.get(`${id}/v/${s.index}`));
    expect([...server.pool.holders.values()].some((set) => set.has(cheater.peer.peerId))).toBe(false);
    // The tabs checked each other too, and agreed: ffmpeg.wasm is deterministic across tabs.
    const tabIds = await Promise.all(tabs.map((t) => t.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string)));
    expect(passed.some((o) => tabIds.includes(o))).toBe(true);
    for (const t of tabs) expect(t.problems).toEqual([]);
    console.log(`e2e trust: ${cheater.made.size} cheater shards, trust counters ${JSON.stringify(server.pool.snapshot().trust)}`);
    cheater.stop();
  });
});
