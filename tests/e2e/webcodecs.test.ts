/**
 * The WebCodecs H.264 fast path end to end: real Chromium encoder tabs
 * (WebCodecs and ffmpeg.wasm), real WebRTC, a real viewer through MSE, and
 * native ffmpeg as the referee of what the server exports.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright';
import { describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { newPage, type TrackedPage } from '../harness/browser.ts';
import { e2eSession } from '../harness/e2eSession.ts';
import { countFrames, fixture } from '../harness/fixtures.ts';
import { decodeErrors, psnr } from '../harness/referee.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let browser: Browser;
let server: TestServer | undefined;
const pages: TrackedPage[] = [];

e2eSession({ onBrowser: (b) => (browser = b), pages, server: () => server, clearServer: () => (server = undefined) });

const LADDER = [
  { id: '180p', video: { codec: 'h264', width: 320, height: 180, bitrate: 600_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
];

async function open(url: string): Promise<TrackedPage> {
  const t = await newPage(browser);
  pages.push(t);
  await t.page.goto(`${server!.url}${url}`);
  return t;
}

/** Opens encoder tabs and waits until each has benchmarked its engines and joined the pool. */
async function encoders(...query: string[]): Promise<TrackedPage[]> {
  const out: TrackedPage[] = [];
  for (const q of query) {
    const t = await open(`/encode?persist=0${q}`);
    await t.page.waitForFunction(() => (window as any).shardcastEncoder?.state?.connection === 'open', null, { timeout: 120_000 });
    out.push(t);
  }
  return out;
}

async function publish(): Promise<string> {
  const { status, json } = await upload(server!.url, fs.readFileSync(await fixture('av-2997')), `?renditions=${encodeURIComponent(JSON.stringify(LADDER))}`);
  expect(status).toBe(201);
  return json.id as string;
}

async function ready(id: string, tabs: TrackedPage[]): Promise<ShardMap> {
  const end = Date.now() + 180_000;
  for (;;) {
    const c = (await (await fetch(`${server!.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end)
      throw new Error(
        `encoding did not finish; tab problems: ${tabs
          .flatMap((t) => t.problems)
          .slice(0, 5)
          .join(' | ')}`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Waits until every shard is in the server cache, then judges the server's export with native ffmpeg. */
async function judgeExport(id: string, map: ShardMap): Promise<{ psnr: number; frames: number; sourceFrames: number }> {
  for (const s of map.shards) {
    for (const r of Object.keys(s.renditions)) {
      for (let i = 0; ; i++) {
        if ((await fetch(`${server!.url}/api/contents/${id}/shards/${r}/${s.index}`, { method: 'HEAD' })).ok) break;
        if (i > 300) throw new Error(`shard ${r}/${s.index} never reached the cache`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  }
  const res = await fetch(`${server!.url}/api/contents/${id}/export.mp4?rendition=180p`);
  expect(res.status).toBe(200);
  expect(res.headers.get('X-Export-Held')).toBe('0');
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-wc-')), 'export.mp4');
  fs.writeFileSync(file, Buffer.from(await res.arrayBuffer()));
  expect(await decodeErrors(file)).toBe('');
  const source = await fixture('av-2997');
  return { psnr: await psnr(file, source, 320, 180), frames: await countFrames(file), sourceFrames: await countFrames(source) };
}

interface ViewerReport {
  state: string;
  error: string | undefined;
  stats: { fromPeers: number; fromCache: number; skipped: number; hashFailures: number };
  video: { status: string; source?: string }[];
  audio: { status: string; source?: string }[];
  currentTime: number;
}

async function watchToEnd(id: string): Promise<ViewerReport> {
  const v = await open(`/watch/${id}?cache=0`);
  await v.page.waitForSelector('[data-state="ended"], [data-state="error"]', { timeout: 120_000 });
  const r = (await v.page.evaluate(() => {
    const w = (window as any).shardcastViewer;
    return { state: w.state, error: w.error, stats: w.stats, video: w.cells.video, audio: w.cells.audio, currentTime: w.video.currentTime };
  })) as ViewerReport;
  expect(r.error, `viewer error; page problems: ${v.problems.join(' | ')}`).toBeUndefined();
  expect(r.state).toBe('ended');
  expect(r.stats.skipped).toBe(0);
  expect(r.stats.hashFailures).toBe(0);
  for (const c of [...r.video, ...r.audio]) expect(c.status).toBe('appended');
  expect(r.currentTime).toBeGreaterThan(9.9);
  return r;
}

const engineOf = (map: ShardMap, rendition: string) => map.shards.map((s) => s.renditions[rendition]!.engine ?? '');
const state = (t: TrackedPage) =>
  t.page.evaluate(() => (window as any).shardcastEncoder.state) as Promise<{
    peerId: string;
    engines: { name: string; build: string; codecs: string[]; fps?: number }[];
    fallbacks: number;
    jobsFailed: number;
    log: string[];
  }>;

describe('WebCodecs H.264', () => {
  it('encodes H.264 with WebCodecs in a tab that has it, and the content plays end to end in the viewer', async () => {
    server = await startTestServer({});
    const [tab] = await encoders('');
    const st = await state(tab!);
    // The join benchmark ran both engines and the tab offers both.
    expect(st.engines.map((e) => e.name)).toEqual(['ffmpeg-wasm', 'webcodecs']);
    expect(st.engines[1]!.codecs).toContain('h264');
    expect(st.engines.every((e) => (e.fps ?? 0) > 0)).toBe(true);
    const id = await publish();
    const map = await ready(id, [tab!]);
    // Video from WebCodecs, named with the browser build; audio from ffmpeg.wasm (no AAC encoder in WebCodecs).
    expect(new Set(engineOf(map, '180p'))).toEqual(new Set([st.engines[1]!.build]));
    expect(st.engines[1]!.build).toMatch(/^webcodecs@.+\/\d+\.\d+/);
    expect(new Set(engineOf(map, 'audio'))).toEqual(new Set([st.engines[0]!.build]));
    const r = await watchToEnd(id);
    expect(r.stats.fromPeers).toBe(map.shards.length * 2);
    // The same map, the same frames: the server's structure check took every shard, and the export has every frame.
    const j = await judgeExport(id, map);
    console.log(`WebCodecs 180p export: PSNR ${j.psnr.toFixed(2)} dB, ${j.frames}/${j.sourceFrames} frames`);
    expect(j.frames).toBe(j.sourceFrames);
    expect(j.psnr).toBeGreaterThan(30);
  });

  it('plays one stream made by both engines (a WebCodecs tab and an ffmpeg.wasm-only tab)', async () => {
    // 1 s jobs, and a slow x264 preset in the ffmpeg.wasm-only tab: it is alone at the upload, so it takes the
    // first video job, and it cannot finish them all before the WebCodecs tab has joined and taken some.
    server = await startTestServer({ jobSeconds: 1 });
    const [ff] = await encoders('&engines=ffmpeg-wasm&preset=slow');
    expect((await state(ff!)).engines.map((e) => e.name)).toEqual(['ffmpeg-wasm']);
    const id = await publish();
    const [wc] = await encoders('');
    const map = await ready(id, [wc!, ff!]);
    const engines = engineOf(map, '180p');
    expect(engines.some((e) => e.startsWith('webcodecs@'))).toBe(true);
    expect(engines.some((e) => e.startsWith('ffmpeg-wasm@'))).toBe(true);
    const r = await watchToEnd(id);
    const ids = [(await state(wc!)).peerId, (await state(ff!)).peerId];
    expect(new Set(r.video.map((c) => c.source))).toEqual(new Set(ids));
    const j = await judgeExport(id, map);
    console.log(`mixed-engine 180p export: PSNR ${j.psnr.toFixed(2)} dB, ${j.frames}/${j.sourceFrames} frames`);
    expect(j.frames).toBe(j.sourceFrames);
    expect(j.psnr).toBeGreaterThan(30);
  });

  it('falls back to ffmpeg.wasm when WebCodecs fails mid-job, and the job completes', async () => {
    server = await startTestServer({});
    // Test hook (src/encoder/config.ts): WebCodecs throws after 10 frames of every job. After one such
    // failure the tab keeps H.264 on ffmpeg.wasm (webcodecsMaxFailures=1), so later jobs fail over no more.
    const [tab] = await encoders('&failEngine=webcodecs&failAfterFrames=10&webcodecsMaxFailures=1');
    const id = await publish();
    const map = await ready(id, [tab!]);
    const st = await state(tab!);
    // The pool chose WebCodecs, WebCodecs failed, ffmpeg.wasm made every video shard, and no job failed.
    expect(new Set(engineOf(map, '180p'))).toEqual(new Set([st.engines[0]!.build]));
    expect(st.fallbacks).toBe(1);
    expect(st.log.some((l) => l.includes('H.264 stays on ffmpeg.wasm in this tab'))).toBe(true);
    // More than one video job ran: the later ones went straight to ffmpeg.wasm.
    expect(server.pool.counters.jobsCompleted).toBeGreaterThan(2);
    expect(st.jobsFailed).toBe(0);
    expect(server.pool.counters.requeues).toBe(0);
    expect(st.log.some((l) => l.includes('test hook: the encoder fails after 10 frames'))).toBe(true);
    await watchToEnd(id);
  });
});
