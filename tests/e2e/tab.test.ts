/**
 * What an encoder tab promises about itself, in real Chromium with the real
 * server: its shard store stays under `storeBudgetBytes` by evicting (and the
 * pool learns it), and the multi-thread ffmpeg.wasm core falls back to the
 * single-thread one when it crashes, finishing the job.
 */
import fs from 'node:fs';
import type { Browser } from 'playwright';
import { describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { newPage, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { e2eSession } from '../harness/e2eSession.ts';
import { fixture } from '../harness/fixtures.ts';
import { FFMPEG_CORE_BUILD } from '../../src/encoder/FfmpegEngine.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let browser: Browser;
let server: TestServer | undefined;
const pages: TrackedPage[] = [];

e2eSession({ onBrowser: (b) => (browser = b), pages, server: () => server, clearServer: () => (server = undefined) });

async function waitReady(id: string, timeoutMs = 180_000): Promise<ShardMap> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = (await (await fetch(`${server!.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end)
      throw new Error(
        `content ${id} not encoded in time (status ${c.status}); tab problems: ${pages
          .flatMap((p) => p.problems)
          .slice(0, 5)
          .join(' | ')}`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface PoolPeer {
  id: string;
  holdings: number;
  heldBytes: number;
}

describe('store budget', () => {
  it('a tab over its storeBudgetBytes evicts, never holds more than the budget, tells the pool, and a viewer gets the evicted shards from the cache', async () => {
    server = await startTestServer({});
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    // About a sixth of what the content's shards weigh (~0.5 MB): the tab must evict many times over.
    const budget = 96 * 1024;
    const t = await openEncoderTab(browser, `${server.url}/encode?persist=0&engines=ffmpeg-wasm&storeBudgetBytes=${budget}`);
    pages.push(t);
    const peerId = (await t.page.evaluate(() => (window as any).shardcastEncoder.state.peerId)) as string;
    // The tab's own high-water mark, from every state change it makes.
    await t.page.evaluate(() => {
      const enc = (window as any).shardcastEncoder;
      const w = window as any;
      w.__maxHeld = enc.state.bytesHeld;
      enc.on('update', (s: { bytesHeld: number }) => (w.__maxHeld = Math.max(w.__maxHeld, s.bytesHeld)));
    });
    // What the pool believes, sampled while the tab works.
    const seen: PoolPeer[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const snap = (await (await fetch(`${server!.url}/api/pool`)).json()) as { peers: PoolPeer[] };
        const me = snap.peers.find((p) => p.id === peerId);
        if (me) seen.push(me);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const map = await waitReady(json.id);
    await t.page.waitForFunction(() => (window as any).shardcastEncoder.state.current === undefined, null, { timeout: 30_000 });
    sampling = false;
    await sampler;

    const variants = map.shards.reduce((n, s) => n + Object.keys(s.renditions).length, 0);
    const total = map.shards.reduce((n, s) => n + Object.values(s.renditions).reduce((m, st) => m + st.size!, 0), 0);
    expect(total).toBeGreaterThan(3 * budget);
    const st = await t.page.evaluate(() => ({ ...(window as any).shardcastEncoder.state, max: (window as any).__maxHeld }));
    console.log(`store: ${variants} variants, ${total} bytes encoded; tab holds ${st.shardsHeld} (${st.bytesHeld} bytes, max ${st.max}) under ${budget}`);
    expect(st.shardsEncoded).toBeGreaterThanOrEqual(variants);
    expect(st.max).toBeLessThanOrEqual(budget);
    expect(st.shardsHeld).toBeLessThan(variants / 3);
    // The pool's view follows the tab's: its holdings fell as it evicted, and what it lists is what the tab has.
    const maxHoldings = Math.max(...seen.map((p) => p.holdings));
    expect(seen.some((p, i) => i > 0 && p.holdings < seen[i - 1]!.holdings)).toBe(true);
    expect(maxHoldings).toBeLessThan(variants / 2);
    expect(Math.max(...seen.map((p) => p.heldBytes))).toBeLessThanOrEqual(budget);
    const held = [...server.pool.holders.entries()].filter(([k, set]) => k.startsWith(`${json.id}/`) && set.has(peerId)).length;
    expect(held).toBe(st.shardsHeld);
    // Nothing is copied back into the full tab: that would evict another last copy, and so on for ever.
    const orders = server.pool.recentEvents.filter((e) => e.type === 'replicate' && (e.detail as { peerId: string }).peerId === peerId);
    expect(orders).toEqual([]);

    // A viewer plays it all: what the tab still holds from it, the rest from the cache, nothing skipped.
    const v = await newPage(browser);
    pages.push(v);
    await v.page.goto(`${server.url}/watch/${json.id}`);
    await v.page.waitForSelector('[data-state="ended"], [data-state="error"]', { timeout: 120_000 });
    const r = await v.page.evaluate(() => {
      const w = (window as any).shardcastViewer;
      return { state: w.state, error: w.error, stats: { ...w.stats, fetchMs: undefined, transferMs: undefined } };
    });
    console.log(`viewer: ${JSON.stringify(r.stats)}`);
    expect(r.error).toBeUndefined();
    expect(r.state).toBe('ended');
    expect(r.stats.skipped).toBe(0);
    expect(r.stats.fromCache).toBeGreaterThan(0);
    expect(r.stats.fromCache + r.stats.fromPeers).toBe(map.shards.length * 2);
    const after = await t.page.evaluate(() => ({ ...(window as any).shardcastEncoder.state, max: (window as any).__maxHeld }));
    expect(after.max).toBeLessThanOrEqual(budget);
  }, 300_000);
});

describe('multi-thread core', () => {
  it('falls back to the single-thread core when the multi-thread core crashes mid-job, and finishes the job there', async () => {
    server = await startTestServer({});
    const { json } = await upload(server.url, fs.readFileSync(await fixture('mov')), '', 'clip.mov');
    // The hook kills the multi-thread core's first job exec after 20 frames, as its real crashes do.
    const t = await openEncoderTab(browser, `${server.url}/encode?persist=0&engines=ffmpeg-wasm&ffmpegCore=multi&failEngine=ffmpeg-multi&failAfterFrames=20`);
    pages.push(t);
    const map = await waitReady(json.id);
    await t.page.waitForFunction(() => (window as any).shardcastEncoder.state.current === undefined, null, { timeout: 30_000 });
    const st = await t.page.evaluate(() => {
      const enc = (window as any).shardcastEncoder;
      return { ...enc.state, stats: enc.engine.stats, isolated: crossOriginIsolated };
    });
    // It started on the multi-thread core (the join benchmark ran there) and loaded the single-thread one once it crashed.
    expect(st.isolated).toBe(true);
    expect(st.stats.loads).toBeGreaterThanOrEqual(2);
    expect(st.stats.multiFallbacks).toBe(1);
    expect(st.coreFallbacks).toBe(1);
    expect(st.ffmpegCore).toBe('single');
    expect(st.engines[0].build).toBe(`ffmpeg-wasm@${FFMPEG_CORE_BUILD}/veryfast`);
    expect(st.log.join('\n')).toMatch(/the multi-thread core failed .*encoded with the single-thread core/);
    // The job it crashed in was finished in the tab, not failed back to the pool.
    expect(st.jobsFailed).toBe(0);
    expect(server.pool.recentEvents.filter((e) => /job-(failed|requeued)/.test(e.type))).toEqual([]);
    // Every shard was made by the single-thread core, and says so.
    const engines = new Set(map.shards.flatMap((s) => Object.values(s.renditions).map((r) => (r as { engine?: string }).engine)));
    expect([...engines]).toEqual([`ffmpeg-wasm@${FFMPEG_CORE_BUILD}/veryfast`]);
    expect(t.problems).toEqual([]);
  }, 240_000);
});
