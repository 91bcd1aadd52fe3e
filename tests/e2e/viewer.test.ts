/**
 * Viewers end to end: real Chromium playing through MSE, shards over real
 * WebRTC from real encoder tabs (ffmpeg.wasm), verified by hash.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright';
import { describe, expect, it } from 'vitest';
import { shardKeyString, type ShardMap } from '../../src/shared/shardMap.ts';
import { newPage, recordVideoSizes, type TrackedPage } from '../harness/browser.ts';
import { e2eSession } from '../harness/e2eSession.ts';
import { viewerReport, watchToEnd } from '../harness/viewerPage.ts';
import { countFrames, fixture } from '../harness/fixtures.ts';
import { NodePeer } from '../harness/nodePeer.ts';
import { decodeErrors, psnr, silences, streams } from '../harness/referee.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

let browser: Browser;
let server: TestServer | undefined;
const pages: TrackedPage[] = [];
const nodePeers: NodePeer[] = [];

e2eSession({
  onBrowser: (b) => (browser = b),
  pages,
  server: () => server,
  clearServer: () => (server = undefined),
  afterEachTest: () => {
    for (const p of nodePeers.splice(0)) p.close();
  },
});

async function open(path: string): Promise<TrackedPage> {
  const t = await newPage(browser);
  pages.push(t);
  await t.page.goto(`${server!.url}${path}`);
  return t;
}

/**
 * Opens `tabs` encoder tabs and waits until the content is encoded, and with
 * `cached`, until every shard is in the server cache too: a tab uploads after
 * the pool accepts a shard, so closing it at once could lose uploads.
 */
async function encodeAll(id: string, tabs = 1, cached = false): Promise<{ map: ShardMap; encoders: TrackedPage[] }> {
  const r = await encodeOnly(id, tabs);
  if (cached) {
    for (const s of r.map.shards) {
      for (const rendition of Object.keys(s.renditions)) {
        const res = await cachedShard(`${server!.url}/api/contents/${id}/shards/${rendition}/${s.index}`);
        expect(res.status, `shard ${rendition}/${s.index} never reached the cache`).toBe(200);
      }
    }
  }
  return r;
}

async function encodeOnly(id: string, tabs: number): Promise<{ map: ShardMap; encoders: TrackedPage[] }> {
  const encoders: TrackedPage[] = [];
  for (let i = 0; i < tabs; i++) encoders.push(await open('/encode?persist=0'));
  const end = Date.now() + 120_000;
  for (;;) {
    const c = (await (await fetch(`${server!.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return { map: c.shardMap, encoders };
    if (Date.now() > end) {
      const failed = server!.pool.recentEvents.filter((e) => /fail|reject/.test(e.type)).slice(-5);
      throw new Error(
        `encoding did not finish: ${JSON.stringify(failed)}; encoder tab problems: ${encoders
          .flatMap((e) => e.problems)
          .slice(0, 5)
          .join(' | ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('viewer', () => {
  it('plays a content to the end with every shard over WebRTC from two encoder tabs (cache off), and downloads what it played', async () => {
    server = await startTestServer({ cacheEnabled: false });
    // Enough bitrate that PSNR judges the reconstruction (placement, order, frames), not the rate control.
    const ladder = [
      { id: '180p', video: { codec: 'h264', width: 320, height: 180, bitrate: 600_000 } },
      { id: '90p', video: { codec: 'h264', width: 160, height: 90, bitrate: 150_000 } },
      { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
    ];
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')), `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
    const { map, encoders } = await encodeAll(json.id, 2);
    const ids = await Promise.all(encoders.map((e) => e.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string)));
    const v = await open(`/watch/${json.id}?cache=0`);
    const r = await watchToEnd(v);
    expect(r.stats.fromCache).toBe(0);
    expect(r.stats.skipped).toBe(0);
    expect(r.stats.fromPeers).toBe(map.shards.length * 2);
    for (const c of [...r.video, ...r.audio]) {
      expect(c.status).toBe('appended');
      expect(ids).toContain(c.source);
    }
    expect(r.currentTime).toBeGreaterThan(9.9);
    expect(r.stats.stalls).toBe(0);

    // The download button: the reconstruction this tab played, as one MP4, judged by native ffmpeg.
    const source = await fixture('av-2997');
    const [dl] = await Promise.all([v.page.waitForEvent('download', { timeout: 60_000 }), v.page.click('[data-testid="download"]')]);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-dl-')), 'watched.mp4');
    await dl.saveAs(file);
    expect(await decodeErrors(file)).toBe('');
    const out = await streams(file);
    const src = await streams(source);
    expect(`${out.video.width}x${out.video.height}`).toBe('320x180');
    expect(Math.abs((await countFrames(file)) - (await countFrames(source)))).toBeLessThanOrEqual(1);
    const db = await psnr(file, source, 320, 180);
    console.log(`viewer download: PSNR ${db.toFixed(2)} dB against the source`);
    expect(db).toBeGreaterThanOrEqual(30);
    const srcAudio = Number(src.audio.duration);
    expect(Math.abs(Number(out.audio.duration) - srcAudio) / srcAudio).toBeLessThan(0.01);
    expect(await silences(file, srcAudio)).toEqual([]);
    expect(await v.page.textContent('[data-testid="download-report"]')).toMatch(/34 video shards, 34 audio/);
  });

  it('catches a peer serving corrupted bytes by hash and reports it; reports never convict, and those the server can refute do not count', async () => {
    server = await startTestServer({});
    // Every counted report, kept here: the pool's own list keeps only its last 20 reports.
    const reported: string[] = [];
    server.pool.on('peer-reported', (e) => reported.push(e.peerId));
    const reportedEvents = (peerId: string) => reported.filter((p) => p === peerId).length;
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    const { map, encoders } = await encodeAll(json.id, 1, true);
    const honestId = await encoders[0]!.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string);
    const top = map.renditions[0]!.id;

    // A viewer accuses the honest tab. The server can refute a report about a shard the tab does not
    // claim, and a second report of one shard; a report about a shard it does claim it cannot
    // (that one counts, and shows the forger's messages are read at all).
    const forger = await WsPeer.viewer(server.url);
    const accuse = (index: number) =>
      forger.send({ type: 'report-peer', peerId: honestId, key: { contentId: json.id, rendition: top, index }, reason: 'forged' });
    accuse(map.shards.length + 3);
    accuse(0);
    accuse(0);
    await processed(forger, json.id);
    forger.close();
    // Counted, and without effect on the accused: its record is clean.
    expect(server.pool.health.get(honestId).invalid).toBe(0);
    expect(server.pool.health.isQuarantined(honestId)).toBe(false);
    expect(reportedEvents(honestId)).toBe(1);

    // The honest tab leaves; a liar announces every shard with the accepted hash and serves garbage.
    await encoders[0]!.context.close();
    const served = new Map<string, { bytes: Uint8Array; sha256: string }>();
    const holdings = [];
    for (const s of map.shards) {
      for (const [rendition, st] of Object.entries(s.renditions)) {
        const key = { contentId: json.id, rendition, index: s.index };
        served.set(shardKeyString(key), { bytes: new Uint8Array(st.size!).fill(0x42), sha256: st.sha256! });
        holdings.push({ key, sha256: st.sha256!, size: st.size! });
      }
    }
    const liar = await NodePeer.holder(server.url, served, holdings);
    nodePeers.push(liar);
    const v = await open(`/watch/${json.id}`);
    const r = await watchToEnd(v);
    expect(r.stats.hashFailures).toBeGreaterThan(0);
    expect(r.stats.fromPeers).toBe(0); // nothing unverified was ever used
    expect(r.stats.fromCache).toBe(map.shards.length * 2);

    // The viewer's reports counted (within its budget), as their own events in /api/pool; the server cannot see
    // what two peers exchange, so they only put the liar last in this viewer's holder lists, never in quarantine.
    const pool = (await (await fetch(`${server.url}/api/pool`)).json()) as { events: { type: string; detail: { peerId?: string } }[] };
    const inLog = pool.events.filter((e) => e.type === 'peer-reported' && e.detail.peerId === liar.ws.peerId).length;
    expect(reportedEvents(liar.ws.peerId)).toBeGreaterThan(0);
    expect(reportedEvents(liar.ws.peerId)).toBeLessThanOrEqual(server.config.reportsPerMinute);
    expect(inLog).toBe(reportedEvents(liar.ws.peerId));
    expect(server.pool.health.isQuarantined(liar.ws.peerId)).toBe(false);
    expect(reportedEvents(honestId)).toBe(1);
  });

  it('falls back to the cache when the encoder holding the rest dies mid-play', async () => {
    server = await startTestServer({});
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    const { encoders } = await encodeAll(json.id, 1, true);
    // The viewer is before most of the content when its only holder dies.
    const v = await open(`/watch/${json.id}?lookAheadSeconds=1`);
    await v.page.waitForSelector('[data-state="playing"]', { timeout: 30_000 });
    await encoders[0]!.context.close();
    const r = await watchToEnd(v);
    expect(r.stats.fromPeers).toBeGreaterThan(0);
    expect(r.stats.fromCache).toBeGreaterThan(0);
    expect(r.stats.skipped).toBe(0);
    expect([...r.video, ...r.audio].every((c) => c.status === 'appended')).toBe(true);
  });

  it('when the holder of a range dies: a lower rendition from another peer, and with nothing left, held frames and silence with no stall', async () => {
    server = await startTestServer({});
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    const { map, encoders } = await encodeAll(json.id, 1, true);
    await encoders[0]!.context.close();
    const peerWith = await peersServing(json.id, map);
    const [top, low] = map.renditions.filter((r) => 'video' in r).map((r) => r.id);
    const range = (i: number) => i >= 15 && i < 23; // 4.5 s to 6.9 s

    // 1. The range's top rendition is on one peer that dies; another peer holds the range lower.
    const a = await peerWith((r, i) => !range(i) || r !== top);
    const b = await peerWith((r, i) => range(i) && r === top);
    const v = await open(`/watch/${json.id}?cache=0&lookAheadSeconds=1`);
    await v.page.waitForSelector('[data-state="playing"]', { timeout: 30_000 });
    expect(await v.page.evaluate(() => (window as any).shardcastViewer.video.currentTime)).toBeLessThan(3);
    b.close();
    const r = await watchToEnd(v);
    expect(r.stats.skipped).toBe(0);
    for (let i = 15; i < 23; i++) expect(r.video[i]).toMatchObject({ status: 'appended', source: a.ws.peerId, rendition: low });
    expect(r.video.filter((_c, i) => !range(i)).every((c) => c.source === a.ws.peerId)).toBe(true);
    a.close();

    // 2. The range is on one peer only, in every rendition and the audio; it dies and there is no cache.
    const a2 = await peerWith((_r, i) => !range(i));
    const b2 = await peerWith((_r, i) => range(i));
    const w = await open(`/watch/${json.id}?cache=0&lookAheadSeconds=1&missingGraceMs=300`);
    await w.page.waitForSelector('[data-state="playing"]', { timeout: 30_000 });
    expect(await w.page.evaluate(() => (window as any).shardcastViewer.video.currentTime)).toBeLessThan(3);
    b2.close();
    const r2 = await watchToEnd(w);
    for (let i = 0; i < map.shards.length; i++) {
      if (range(i)) {
        expect(r2.video[i]).toMatchObject({ status: 'skipped', concealed: 'hold' });
        expect(r2.audio[i]).toMatchObject({ status: 'skipped', concealed: 'silence' });
      } else {
        expect(r2.video[i]).toMatchObject({ status: 'appended', source: a2.ws.peerId });
      }
    }
    expect(r2.stats.skipped).toBe(16);
    // Concealed, not waited at: the element never stalled, and played the whole length.
    expect(r2.stats.stalls).toBe(0);
    expect(r2.currentTime).toBeGreaterThan(9.9);
    expect(await timelineConcealed(w)).toBe(16);
  });

  it('switches rendition mid-play in size and codec (H.264 320x180 <-> VP9 160x90) with no stall', async () => {
    server = await startTestServer({});
    const ladder = [
      { id: 'h264', video: { codec: 'h264', width: 320, height: 180, bitrate: 300_000 } },
      { id: 'vp9', video: { codec: 'vp9', width: 160, height: 90, bitrate: 120_000 } },
      { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
    ];
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')), `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
    const { map, encoders } = await encodeAll(json.id, 2, true);
    for (const e of encoders) await e.context.close();
    // Availability drives the switches: VP9 only, then H.264 only, then VP9 only again.
    const h264Range = (i: number) => i >= 12 && i < 23;
    const peerWith = await peersServing(json.id, map);
    await peerWith((r, i) => r === 'audio' || (r === 'h264') === h264Range(i));
    const v = await newPage(browser);
    pages.push(v);
    await recordVideoSizes(v);
    await v.page.goto(`${server.url}/watch/${json.id}?cache=0`);
    const r = await watchToEnd(v);
    for (let i = 0; i < map.shards.length; i++) expect(r.video[i]).toMatchObject({ status: 'appended', rendition: h264Range(i) ? 'h264' : 'vp9' });
    expect(r.stats.stalls).toBe(0);
    expect(r.stats.skipped).toBe(0);
    expect(r.stats.codecSwitches).toBe(2);
    expect(r.currentTime).toBeGreaterThan(9.9);
    // The picture really changed size, and back: the element decoded both codecs.
    const sizes = await v.page.evaluate(() => (window as any).__videoSizes as string[]);
    expect(sizes).toEqual(['160x90', '320x180', '160x90']);
  });

  it('replicates shards a viewer is playing onto an idle encoder tab, which copies them over WebRTC and serves them', async () => {
    // One viewer asks for each shard about once (it buffers ahead), so "hot" is set low here.
    // No cross-checks: the idle tab would otherwise also hold the shards it verified, not only its replicas.
    server = await startTestServer({
      cacheEnabled: false,
      replicateAboveRate: 0.2,
      perReplicaRate: 0.1,
      maxReplicas: 2,
      demandHalfLifeMs: 2000,
      verifySampleRate: 0,
      verifyNewEncoderJobs: 0,
    });
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    const { encoders } = await encodeAll(json.id, 1);
    const idle = await open('/encode?persist=0');
    await idle.page.waitForFunction(() => (window as any).shardcastEncoder?.state?.connection === 'open', null, { timeout: 30_000 });
    const idleId = await idle.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string);
    const v = await open(`/watch/${json.id}?cache=0`);
    await watchToEnd(v);
    const taken = await idle.page.evaluate(() => (window as any).shardcastEncoder.state.replicasTaken as number);
    expect(taken).toBeGreaterThan(0);
    const heldByIdle = [...server.pool.holders.entries()].filter(([, set]) => set.has(idleId));
    expect(heldByIdle.length).toBe(taken);
    const origin = await encoders[0]!.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string);
    expect(server.pool.recentEvents.some((e) => e.type === 'replica-stored' && (e.detail as { peerId: string }).peerId === idleId)).toBe(true);
    for (const [, set] of heldByIdle) expect(set.has(origin)).toBe(true);

    // The replicas serve: with the origin gone (and no cache), a second viewer gets them from the idle tab.
    // (That viewer would keep to the origin while it was there: it prefers peers it is already connected to.)
    const replicaKeys = new Set(heldByIdle.map(([k]) => k));
    await encoders[0]!.context.close();
    const served0 = await idle.page.evaluate(() => (window as any).shardcastEncoder.state.shardsServed as number);
    const w = await open(`/watch/${json.id}?cache=0&missingGraceMs=300`);
    const r = await watchToEnd(w);
    const fromReplicas = [...r.video.map((c, i) => ['video', i, c] as const), ...r.audio.map((c, i) => ['audio', i, c] as const)].filter(
      ([track, i, c]) =>
        c.status === 'appended' && replicaKeys.has(shardKeyString({ contentId: json.id, rendition: track === 'audio' ? 'audio' : c.rendition!, index: i })),
    );
    expect(fromReplicas.length).toBeGreaterThan(0);
    for (const [, , c] of fromReplicas) expect(c.source).toBe(idleId);
    const served = await idle.page.evaluate(() => (window as any).shardcastEncoder.state.shardsServed as number);
    expect(served - served0).toBeGreaterThanOrEqual(fromReplicas.length);
  });

  it('with no source for any shard, every shard is skipped and the page still reaches ended', async () => {
    server = await startTestServer({ cacheEnabled: false });
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    const w = await open(`/watch/${json.id}?cache=0&missingGraceMs=300&startWaitMs=500`);
    const r = await watchToEnd(w, 60_000);
    expect(r.stats.fromPeers + r.stats.fromCache).toBe(0);
    expect([...r.video, ...r.audio].every((c) => c.status === 'skipped')).toBe(true);
  });
});

/**
 * Real encoder output, taken from the server cache, for Node peers that serve
 * it over real WebRTC: `peerWith(pick)` starts one holding what `pick` selects.
 */
async function peersServing(contentId: string, map: ShardMap) {
  const bytes = new Map<string, { bytes: Uint8Array; sha256: string }>();
  for (const s of map.shards) {
    for (const [rendition, st] of Object.entries(s.renditions)) {
      const res = await cachedShard(`${server!.url}/api/contents/${contentId}/shards/${rendition}/${s.index}`);
      expect(res.status).toBe(200);
      bytes.set(shardKeyString({ contentId, rendition, index: s.index }), { bytes: new Uint8Array(await res.arrayBuffer()), sha256: st.sha256! });
    }
  }
  return async (pick: (rendition: string, index: number) => boolean): Promise<NodePeer> => {
    const served = new Map<string, { bytes: Uint8Array; sha256: string }>();
    const holdings = [];
    for (const s of map.shards) {
      for (const rendition of Object.keys(s.renditions)) {
        if (!pick(rendition, s.index)) continue;
        const key = { contentId, rendition, index: s.index };
        const b = bytes.get(shardKeyString(key))!;
        served.set(shardKeyString(key), b);
        holdings.push({ key, sha256: b.sha256, size: b.bytes.byteLength });
      }
    }
    const p = await NodePeer.holder(server!.url, served, holdings);
    nodePeers.push(p);
    return p;
  };
}

/** A shard from the server cache, waiting for the encoder's upload (it follows acceptance). */
async function cachedShard(url: string): Promise<Response> {
  for (let i = 0; ; i++) {
    const res = await fetch(url);
    if (res.status === 200 || i > 300) return res;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const timelineConcealed = (t: TrackedPage) => t.page.locator('[data-concealed="hold"], [data-concealed="silence"]').count();

/** Resolves once the server has handled everything `p` sent before: it answers one socket's messages in order. */
async function processed(p: WsPeer, contentId: string): Promise<void> {
  const requestId = Math.floor(Math.random() * 1e9);
  p.send({ type: 'locate', requestId, contentId, from: 0, count: 1 });
  await p.next('holders', (m) => m.requestId === requestId);
}
