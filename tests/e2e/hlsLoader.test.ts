/**
 * The hls.js loader plug-in and the embed page, end to end: a real encoder
 * tab (ffmpeg.wasm) encodes a content with the server cache off, and another
 * site (its own origin, another port) plays it with hls.js from npm and the
 * plug-in built into /lib/shardcast-hlsjs.js, using README's example page as
 * written, to `ended`; every segment is built from shards fetched over WebRTC
 * and verified. A peer serving corrupted shards is caught and the content
 * still plays (from another rendition). The site also frames /embed/:id.
 *
 * One server, one encoder tab, one browser for the file; the corrupted-peer
 * test closes the tab, so it runs last.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardcastHlsStats } from '../../src/hlsLoader/index.ts';
import { planHls } from '../../src/shared/hls/plan.ts';
import { shardKeyString, type ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, newPage, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { NodePeer } from '../harness/nodePeer.ts';
import { startTestServer, type TestServer, upload } from '../harness/testServer.ts';

const root = path.resolve(import.meta.dirname, '../..');
const LADDER = [
  { id: '180p', video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 } },
  { id: '90p', video: { codec: 'h264', width: 160, height: 90, bitrate: 120_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 96_000, sampleRate: 48000, channels: 2 } },
];

let browser: Browser;
let server: TestServer;
let site: http.Server;
let siteUrl: string;
let encoder: TrackedPage;
let contentId: string;
let map: ShardMap;
const pages: TrackedPage[] = [];
const nodePeers: NodePeer[] = [];

/** README's example page, pointed at this test's server, hls.js and content; `extraHlsConfig` is added to `new Hls({...})`. */
function examplePage(extraHlsConfig: string): string {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const block = /```html\n(<!doctype html>[\s\S]*?ShardcastHls[\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error('README has no example page using ShardcastHls (an ```html block starting with <!doctype html>)');
  const swaps: [string, string][] = [
    ['https://cdn.jsdelivr.net/npm/hls.js@1.7.4/dist/hls.mjs', '/hls.mjs'],
    ['https://video.example.org', server.url],
    ['CONTENT_ID', contentId],
    ['...p2p.hlsConfig() }', `...p2p.hlsConfig(), ${extraHlsConfig} }`],
  ];
  let html = block;
  for (const [from, to] of swaps) {
    if (!html.includes(from)) throw new Error(`README's example page no longer contains ${from}`);
    html = html.replaceAll(from, to);
  }
  return html;
}

/** The other site: README's player page, hls.js from npm, and a page framing /embed/:id. */
function startSite(): Promise<void> {
  const hlsjs = fs.readFileSync(path.join(root, 'node_modules/hls.js/dist/hls.mjs'));
  site = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://site');
    const send = (type: string, body: string | Buffer) => res.writeHead(200, { 'Content-Type': type }).end(body);
    if (url.pathname === '/hls.mjs') return send('text/javascript', hlsjs);
    if (url.pathname === '/player.html') return send('text/html', examplePage(url.searchParams.get('hls') ?? ''));
    if (url.pathname === '/frame.html') {
      return send(
        'text/html',
        `<!doctype html><iframe src="${server.url}/embed/${contentId}?cache=0&muted=1" width="320" height="180" allow="autoplay"></iframe>`,
      );
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve) => site.listen(0, '0.0.0.0', () => resolve()));
}

/** A port nothing listens on now, so the server's own origin can be named in its allowed origins before it starts. */
async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '0.0.0.0', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

beforeAll(async () => {
  browser = await launchBrowser();
  await startSite();
  // Another origin than the server's (another host name and port).
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  const port = await freePort();
  server = await startTestServer({ port, cacheEnabled: false, corsOrigins: siteUrl, allowedOrigins: `${siteUrl},http://localhost:${port}` });
  const up = await upload(server.url, fs.readFileSync(await fixture('av-3s')), `?renditions=${encodeURIComponent(JSON.stringify(LADDER))}`);
  expect(up.status, JSON.stringify(up.json)).toBe(201);
  contentId = up.json.id;
  encoder = await openEncoderTab(browser, `${server.url}/encode?persist=0`);
  const end = Date.now() + 180_000;
  for (;;) {
    const c = (await (await fetch(`${server.url}/api/contents/${contentId}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') {
      map = c.shardMap;
      break;
    }
    if (Date.now() > end) throw new Error(`not encoded in time; encoder problems: ${encoder.problems.slice(0, 5).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}, 240_000);

afterAll(async () => {
  for (const p of nodePeers) p.close();
  for (const p of [...pages, encoder]) await p?.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
  await new Promise((r) => site?.close(r));
});

interface Played {
  /** What to print when an assertion fails: page problems, console tail, buffered ranges. */
  why: string;
  ended: boolean;
  error: string | undefined;
  currentTime: number;
  stats: ShardcastHlsStats;
  /** Per segment handed to hls.js: its rendition, kind and the sources of its shards. */
  segments: { rendition: string; kind: string; shards: { index: number; source: string }[] }[];
}

/** Opens the site's player page (README's example) and waits for hls.js to play to the end, or a fatal hls.js error. */
async function playOnSite(hlsConfig: string): Promise<Played> {
  const t = await newPage(browser);
  pages.push(t);
  await t.page.addInitScript(() => {
    const w = window as any;
    w.segmentLog = [];
    w.fatal = undefined;
    // README's page puts hls and p2p on window once made; follow them from then on.
    let hooked = false;
    const hook = setInterval(() => {
      if (hooked || !w.hls || !w.p2p) return;
      hooked = true;
      clearInterval(hook);
      w.p2p.on('segment', (s: unknown) => w.segmentLog.push(s));
      w.hls.on('hlsError', (_: unknown, d: { fatal: boolean; details: string }) => {
        if (d.fatal) w.fatal = d.details;
      });
    }, 1);
  });
  await t.page.goto(`${siteUrl}/player.html?hls=${encodeURIComponent(hlsConfig)}`);
  await t.page.waitForFunction(() => (window as any).fatal !== undefined || document.querySelector('video')?.ended, null, { timeout: 60_000 }).catch(() => {});
  const r = (await t.page.evaluate(() => {
    const w = window as any;
    const v = document.querySelector('video')!;
    const buffered = Array.from({ length: v.buffered.length }, (_, i) => `${v.buffered.start(i).toFixed(3)}-${v.buffered.end(i).toFixed(3)}`);
    return {
      ended: v.ended,
      error: w.fatal,
      currentTime: v.currentTime,
      stats: { ...w.p2p?.stats },
      segments: w.segmentLog,
      why: JSON.stringify({ t: v.currentTime, buffered, stats: w.p2p?.stats, level: w.hls?.currentLevel }),
    };
  })) as Played;
  r.why += ` problems: ${t.problems.slice(0, 5).join(' | ')}; console: ${t.console.slice(-15).join(' | ')}`;
  return r;
}

describe('hls.js with the shardcast loader plug-in (server cache off)', () => {
  it('plays README’s example page to the end, every segment built from verified shards from the encoder tab', async () => {
    const encoderId = await encoder.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string);
    // The server cannot serve these segments itself: its cache is off.
    const seg = await fetch(`${server.url}/api/contents/${contentId}/hls/180p/seg-0.m4s`);
    expect(seg.status).toBeGreaterThanOrEqual(400);

    const r = await playOnSite('');
    expect(r.error, r.why).toBeUndefined();
    expect(r.ended, r.why).toBe(true);
    expect(r.currentTime).toBeGreaterThan(2.9);
    expect(r.stats.shardsFromCache).toBe(0);
    expect(r.stats.bytesFromCache).toBe(0);
    expect(r.stats.hashFailures).toBe(0);
    expect(r.stats.segmentsFailed).toBe(0);
    expect(r.stats.bytesFromPeers).toBeGreaterThan(0);
    expect(r.stats.shardsFromPeers).toBe(r.stats.shardsVerified);
    expect(r.stats.segments).toBe(r.segments.length);
    // Every media segment of the audio rendition and of some video rendition, plus their init segments, all from the tab.
    const plan = planHls(map);
    const media = r.segments.filter((s) => s.kind === 'media');
    const audio = plan.renditions.find((p) => p.kind === 'audio')!;
    expect(new Set(media.filter((s) => s.rendition === 'audio').map((s) => s.shards[0]!.index)).size).toBe(audio.segments.length);
    const videoStarts = new Set(media.filter((s) => s.rendition !== 'audio').map((s) => s.shards[0]!.index));
    expect(videoStarts.size).toBe(plan.renditions[0]!.segments.length);
    expect(r.segments.filter((s) => s.kind === 'init').length).toBeGreaterThanOrEqual(2);
    for (const s of r.segments) for (const sh of s.shards) expect(sh.source).toBe(encoderId);
    console.log(`hls.js + plug-in: ${r.stats.segments} segments, ${r.stats.shardsVerified} shards, ${r.stats.bytesFromPeers} bytes from peers`);
  });

  it('/embed/:id plays in an iframe on another site, from peers', async () => {
    const res = await fetch(`${server.url}/embed/${contentId}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toBe('frame-ancestors *');
    expect(res.headers.get('x-frame-options')).toBeNull();
    const t = await newPage(browser);
    pages.push(t);
    await t.page.goto(`${siteUrl}/frame.html`);
    const frame = t.page.frameLocator('iframe');
    await frame.locator('[data-state="ended"], [data-state="error"]').waitFor({ timeout: 120_000 });
    const embed = t.page.frames().find((f) => f.url().includes('/embed/'))!;
    const r = (await embed.evaluate(() => {
      const w = (window as any).shardcastViewer;
      return { state: w.state, error: w.error, fromPeers: w.stats.fromPeers, fromCache: w.stats.fromCache, skipped: w.stats.skipped };
    })) as { state: string; error?: string; fromPeers: number; fromCache: number; skipped: number };
    expect(r.error, t.problems.join(' | ')).toBeUndefined();
    expect(r).toMatchObject({ state: 'ended', fromPeers: map.shards.length * 2, fromCache: 0, skipped: 0 });
  });

  it('catches a peer serving corrupted shards by hash, reports it, and plays on from another rendition', async () => {
    // Real shards of 90p and audio, copied off the encoder tab over WebRTC, for an honest Node peer; then the tab leaves.
    const encoderId = await encoder.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string);
    const copier = await NodePeer.viewer(server.url);
    nodePeers.push(copier);
    const honest = new Map<string, { bytes: Uint8Array; sha256: string }>();
    const lies = new Map<string, { bytes: Uint8Array; sha256: string }>();
    for (const s of map.shards) {
      for (const [rendition, st] of Object.entries(s.renditions)) {
        const key = { contentId, rendition, index: s.index };
        if (rendition === '180p') lies.set(shardKeyString(key), { bytes: new Uint8Array(st.size!).fill(0x42), sha256: st.sha256! });
        else honest.set(shardKeyString(key), { bytes: (await copier.fetch(encoderId, key, st.sha256)).bytes, sha256: st.sha256! });
      }
    }
    await encoder.context.close();
    const holdings = (m: Map<string, { bytes: Uint8Array; sha256: string }>) =>
      [...m].map(([k, v]) => {
        const [, rendition, index] = k.split('/');
        return { key: { contentId, rendition: rendition!, index: Number(index) }, sha256: v.sha256, size: v.bytes.byteLength };
      });
    const liar = await NodePeer.holder(server.url, lies, holdings(lies));
    nodePeers.push(liar, await NodePeer.holder(server.url, honest, holdings(honest)));

    // Every counted report (reports never convict on their own: signaling/pool/Reports.ts).
    const reported: string[] = [];
    server.pool.on('peer-reported', (e) => reported.push(e.peerId));

    // hls.js starts on the top rendition, which only the liar claims to hold.
    const r = await playOnSite('startLevel: 1');
    expect(r.error, r.why).toBeUndefined();
    expect(r.ended, r.why).toBe(true);
    expect(r.stats.hashFailures).toBeGreaterThan(0);
    expect(r.stats.segmentsFailed).toBeGreaterThan(0);
    expect(r.stats.bytesFromCache).toBe(0);
    // Nothing unverified was used: no segment of the liar's rendition was built, and none from the liar.
    expect(r.segments.filter((s) => s.rendition === '180p')).toEqual([]);
    for (const s of r.segments) for (const sh of s.shards) expect(sh.source).not.toBe(liar.ws.peerId);
    expect(r.segments.filter((s) => s.rendition === '90p' && s.kind === 'media').length).toBe(planHls(map).renditions[1]!.segments.length);
    // The plug-in reported the liar, and the pool counted it (within the reporter's budget).
    expect(reported.filter((p) => p === liar.ws.peerId).length).toBeGreaterThan(0);
  });
});
