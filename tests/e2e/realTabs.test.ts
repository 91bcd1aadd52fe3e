/**
 * The pool page and the viewer with nothing simulated: real encoder tabs
 * (ffmpeg.wasm and WebCodecs) encode two short contents on a real server with
 * byte checks and cross-checks on, and real viewer tabs play them over WebRTC.
 * One browser, one server and one pair of tabs serve every test here, in
 * order: the /pool page against /api/pool, codec switches both ways
 * (H.264 <-> VP9) driven by the viewer's own ABR, and failover when the tab
 * serving a viewer is closed mid-playback. The fast fakes of the same
 * behaviours live in poolPage.test.ts and viewer.test.ts.
 */
import fs from 'node:fs';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { SEVERITY } from '../../src/ui/poolView.ts';
import { launchBrowser, newPage, openEncoderTab, recordVideoSizes, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { viewerReport, watchToEnd } from '../harness/viewerPage.ts';
import { waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let browser: Browser;
let server: TestServer;
const pages: TrackedPage[] = [];
/** The two encoder tabs and their peer ids. */
let tabs: { t: TrackedPage; id: string }[] = [];
/** Content A: H.264 320x180 on top, VP9 160x90 below. Content B: the reverse. */
const contents: Record<'a' | 'b', { id: string; map: ShardMap; top: string; low: string }> = {} as never;

const AUDIO = { id: 'audio', audio: { codec: 'aac', bitrate: 96_000, sampleRate: 48000, channels: 2 } };
const LADDER_A = [
  { id: 'h264', video: { codec: 'h264', width: 320, height: 180, bitrate: 300_000 } },
  { id: 'vp9', video: { codec: 'vp9', width: 160, height: 90, bitrate: 120_000 } },
  AUDIO,
];
const LADDER_B = [
  { id: 'vp9', video: { codec: 'vp9', width: 320, height: 180, bitrate: 300_000 } },
  { id: 'h264', video: { codec: 'h264', width: 160, height: 90, bitrate: 120_000 } },
  AUDIO,
];

interface PoolView {
  peers: {
    id: string;
    role: string;
    jobs: string[];
    holdings: number;
    health?: { ok: number; failed: number; timedOut: number; invalid: number; quarantinedUntil: number };
  }[];
  contents: { id: string; shards: number; renditions: { id: string; status: string; holders: number[]; cached: string }[] }[];
  events: { at: number; type: string; detail: Record<string, unknown> }[];
  jobs: unknown[];
  trust: { checksPlanned: number; shardsVerified: number; checksWaiting: number };
}
const poolApi = async () => (await (await fetch(`${server.url}/api/pool`)).json()) as PoolView;

beforeAll(async () => {
  browser = await launchBrowser();
  // Defaults: byte checks before acceptance, cross-checks of every new encoder's first jobs, cache on.
  server = await startTestServer({});
  // 3 s at 29.97 fps with a tone: 10 shards, small enough to encode twice over in seconds.
  const bytes = fs.readFileSync(await fixture('av-3s'));
  for (const [k, ladder] of [
    ['a', LADDER_A],
    ['b', LADDER_B],
  ] as const) {
    const r = await upload(server.url, bytes, `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    contents[k] = { id: r.json.id as string, map: undefined as never, top: ladder[0]!.id, low: ladder[1]!.id };
  }
  for (let i = 0; i < 2; i++) {
    const t = await openEncoderTab(browser, `${server.url}/encode?persist=0`);
    pages.push(t);
    tabs.push({ t, id: await t.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string) });
  }
  // Everything encoded, every cross-check settled, every shard in the cache: a still picture to compare against.
  await waitFor(
    async () => {
      for (const c of Object.values(contents)) {
        const j = (await (await fetch(`${server.url}/api/contents/${c.id}`)).json()) as { status: string; shardMap: ShardMap };
        if (j.status !== 'ready') return undefined;
        c.map = j.shardMap;
      }
      const p = await poolApi();
      return p.jobs.length === 0 && p.trust.checksWaiting === 0 && p.contents.every((c) => c.renditions.every((r) => !r.cached.includes('0')))
        ? true
        : undefined;
    },
    `both contents encoded, checked and cached; tab problems: ${tabs
      .flatMap((x) => x.t.problems)
      .slice(0, 4)
      .join(' | ')}`,
    240_000,
  );
}, 300_000);

afterAll(async () => {
  for (const p of pages.splice(0)) await p.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

/** A watch page that records every picture size the element shows (its `resize` events). */
async function watch(query: string): Promise<TrackedPage> {
  const t = await newPage(browser);
  pages.push(t);
  await recordVideoSizes(t);
  await t.page.goto(`${server.url}${query}`);
  return t;
}

describe('real encoder tabs', () => {
  it('/pool shows the tabs, a heat map of what they hold and the events, as /api/pool has them', async () => {
    const page = await newPage(browser);
    pages.push(page);
    await page.page.goto(`${server.url}/pool`);
    const api = await poolApi();
    const p = page.page;

    // The tiles and the encoders table: both tabs, idle, with the records the server keeps.
    await expect.poll(() => p.locator('[data-testid=tile-encoders]').textContent(), { timeout: 10_000 }).toMatch(/2\s*encoders · 0 busy ·\s*none quarantined/);
    for (const { t, id } of tabs) {
      const peer = api.peers.find((x) => x.id === id)!;
      expect(peer.holdings).toBeGreaterThan(0);
      // What the server thinks a tab holds is what the tab says it holds.
      expect(await t.page.evaluate(() => (window as any).shardcastEncoder.state.shardsHeld as number)).toBe(peer.holdings);
      const row = p.locator(`[data-testid=encoder-row][data-peer="${id}"]`);
      expect(await row.getAttribute('data-state')).toBe('idle');
      const h = peer.health!;
      expect(h.ok).toBeGreaterThan(0);
      // The "ok · failed · timeouts · invalid" column.
      expect((await row.locator('td').nth(4).textContent())!.replace(/\s+/g, ' ').trim()).toBe(`${h.ok} · ${h.failed} · ${h.timedOut} · ${h.invalid}`);
      expect(await row.locator('td.held').textContent()).toMatch(new RegExp(`^${peer.holdings} `));
    }

    // The heat map: every cell ready and cached, holding the replica count /api/pool gives, and in all as many
    // holdings as the tabs hold.
    let cells = 0;
    let replicas = 0;
    for (const c of api.contents) {
      const heat = p.locator(`[data-testid=content][data-content="${c.id}"] [data-testid=heatmap]`);
      for (const r of c.renditions) {
        const row = heat.locator(`[data-rendition="${r.id}"] [data-status]`);
        expect(await row.count()).toBe(c.shards);
        const shown = await row.evaluateAll((els) =>
          els.map((e) => `${e.getAttribute('data-status')}/${e.getAttribute('data-holders')}/${e.getAttribute('data-cached')}`),
        );
        expect(shown).toEqual(r.holders.map((n) => `ready/${n}/1`));
        expect(Math.min(...r.holders)).toBeGreaterThanOrEqual(1);
        cells += c.shards;
        replicas += r.holders.reduce((a, b) => a + b, 0);
      }
    }
    expect(cells).toBe(2 * 10 * 3);
    expect(replicas).toBe(api.peers.reduce((a, x) => a + x.holdings, 0));

    // Events: every kind the pool recorded that the page shows by default is there, each tab's arrival by id,
    // and the cross-checks between the two tabs passed.
    const types = new Set(api.events.filter((e) => SEVERITY[e.type] !== 'routine').map((e) => e.type));
    expect(types.has('check-passed')).toBe(true);
    expect(types.has('content-complete')).toBe(true);
    const shownTypes = new Set(await p.locator('[data-testid=event]').evaluateAll((els) => els.map((e) => e.getAttribute('data-type'))));
    for (const type of types) expect(shownTypes, `event type ${type}`).toContain(type);
    for (const { id } of tabs) {
      expect(await p.locator('[data-testid=event][data-type=peer-joined]', { hasText: id }).textContent()).toMatch(new RegExp(`encoder ${id} joined`));
    }
    expect(await p.locator('[data-testid=event][data-type=content-complete]').count()).toBe(api.events.filter((e) => e.type === 'content-complete').length);
    expect(page.problems).toEqual([]);
  });

  it('switches codec both ways as its ABR climbs (VP9 -> H.264 on one content, H.264 -> VP9 on the other), every shard from the tabs', async () => {
    // The ABR assumes almost no throughput at first, so it starts on the lower rung and climbs once transfers
    // are measured; no cache, so every shard comes from a tab.
    const viewers = await Promise.all([watch(`/watch/${contents.a.id}?cache=0&abrInitialBps=1`), watch(`/watch/${contents.b.id}?cache=0&abrInitialBps=1`)]);
    const ids = tabs.map((x) => x.id);
    for (const [k, v] of [
      ['a', viewers[0]!],
      ['b', viewers[1]!],
    ] as const) {
      const c = contents[k];
      const r = await watchToEnd(v, 90_000);
      expect(r.stats.skipped).toBe(0);
      expect(r.stats.fromCache).toBe(0);
      expect(r.stats.hashFailures).toBe(0);
      for (const cell of [...r.video, ...r.audio]) {
        expect(cell.status).toBe('appended');
        expect(ids).toContain(cell.source);
      }
      const renditions = r.video.map((x) => x.rendition);
      console.log(`content ${k}: video renditions ${renditions.join(',')}`);
      expect(renditions[0], `content ${k}: ${renditions.join(',')}`).toBe(c.low);
      expect(renditions.at(-1), `content ${k}: ${renditions.join(',')}`).toBe(c.top);
      expect(r.stats.codecSwitches).toBeGreaterThanOrEqual(1);
      expect(r.currentTime).toBeGreaterThan(2.9);
      // The element decoded both codecs: the picture started at the lower rung's size and grew.
      const sizes = await v.page.evaluate(() => (window as any).__videoSizes as string[]);
      expect(sizes[0], `content ${k}: ${sizes.join(',')}`).toBe('160x90');
      expect(sizes).toContain('320x180');
    }
  });

  it('when the tab serving a viewer crashes mid-playback, the viewer goes on from the other tab or the cache and reaches the end', async () => {
    const c = contents.a;
    // A short window, so most of the content is still to fetch when the tab goes.
    const v = await watch(`/watch/${c.id}?lookAheadSeconds=0.5`);
    await v.page.waitForSelector('[data-state="playing"]', { timeout: 60_000 });
    const before = await viewerReport(v);
    const served = before.video.find((x) => x.status === 'appended' && x.source !== 'cache')?.source;
    const victim = tabs.find((x) => x.id === served);
    expect(victim, `first appended cells: ${JSON.stringify(before.video.slice(0, 3))}`).toBeDefined();
    // The viewer is paused while its tab goes, so the rest of the content is still outside its 0.5 s window
    // however slowly the crash lands on a loaded machine; it plays on once the tab is gone.
    await v.page.evaluate(() => (window as any).shardcastViewer.video.pause());
    // The tab's renderer crashes, at once (closing its context takes over a second here, most of this content).
    const cdp = await victim!.t.context.newCDPSession(victim!.t.page);
    const crashed = new Promise((resolve) => victim!.t.page.once('crash', resolve));
    void cdp.send('Page.crash').catch(() => {});
    await crashed;
    tabs = tabs.filter((x) => x !== victim);
    // Cells not even started once the tab is gone can only come from elsewhere.
    const now = await viewerReport(v);
    const later = [...now.video.map((x, i) => ['video', i, x] as const), ...now.audio.map((x, i) => ['audio', i, x] as const)].filter(
      ([, , x]) => x.status === 'pending',
    );
    // The viewer fetches one shard past its window on every tick (Viewer.wanted), so on a slow crash it may already
    // hold the whole 3 s content; then only the end-to-end assertions below apply. Seen once in six full runs.
    if (later.length === 0) console.warn('failover: every cell was fetched before the tab crashed');
    await v.page.evaluate(() => (window as any).shardcastViewer.video.play());

    const r = await watchToEnd(v, 90_000);
    expect(r.stats.skipped).toBe(0);
    expect([...r.video, ...r.audio].every((x) => x.status === 'appended')).toBe(true);
    for (const [track, i] of later) {
      const cell = r[track][i]!;
      expect(cell.source, `${track} ${i}`).not.toBe(victim!.id);
      expect([tabs[0]!.id, 'cache'], `${track} ${i}`).toContain(cell.source);
    }
    expect(r.currentTime).toBeGreaterThan(2.9);
    console.log(
      `failover: ${later.length} cells after the tab crashed, from ${[...new Set(later.map(([track, i]) => (r[track][i]!.source === 'cache' ? 'cache' : 'the other tab')))].join(' and ')}`,
    );
    await waitFor(
      async () => ((await poolApi()).events.some((e) => e.type === 'peer-lost' && e.detail.peerId === victim!.id) ? true : undefined),
      'the pool to see the tab go',
    );
  });
});
