/**
 * GET /api/contents/:id/export.mp4 end to end: a real Chromium tab encodes the
 * content with ffmpeg.wasm and uploads its shards to the server cache, the
 * server rebuilds one MP4 from them, and native ffprobe/ffmpeg referee it
 * against the source.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, newPage, type TrackedPage } from '../harness/browser.ts';
import { countFrames, ffprobeJson, fixture } from '../harness/fixtures.ts';
import { decodeErrors, pcm, psnr, silences, streams } from '../harness/referee.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

const run = promisify(execFile);

let browser: Browser;
let server: TestServer;
let page: TrackedPage | undefined;
let id: string;
let map: ShardMap;
let source: string;
let dir: string;

// Two video rungs (the export must pick the better one) and the audio rendition.
// A generous top bitrate, so PSNR measures placement rather than compression.
const LADDER = [
  { id: 'hq', video: { codec: 'h264', width: 320, height: 180, bitrate: 1_500_000 } },
  { id: 'lo', video: { codec: 'h264', width: 160, height: 90, bitrate: 200_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
];

const exportUrl = (query = '') => `${server.url}/api/contents/${id}/export.mp4${query}`;
const cacheFile = (rendition: string, index: number) => path.join(server.dataDir, 'cache', id, rendition, `${index}.mp4`);

async function download(query: string, name: string): Promise<{ file: string; res: Response; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(exportUrl(query));
  const bytes = new Uint8Array(await res.arrayBuffer());
  const ms = performance.now() - t0;
  expect(res.status, new TextDecoder().decode(bytes.subarray(0, 300))).toBe(200);
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return { file, res, ms };
}

function rmsDiff(a: Float32Array, b: Float32Array, from: number, to: number, lag = 0): number {
  let sum = 0;
  let n = 0;
  for (let i = Math.max(from, -lag); i < Math.min(to, a.length, b.length - lag); i++) {
    const d = b[i + lag]! - a[i]!;
    sum += d * d;
    n++;
  }
  return Math.sqrt(sum / Math.max(1, n));
}

async function waitCached(timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const missing = map.shards.flatMap((s) =>
      Object.keys(s.renditions)
        .filter((r) => !fs.existsSync(cacheFile(r, s.index)))
        .map((r) => `${r}/${s.index}`),
    );
    if (missing.length === 0) return;
    if (Date.now() > end) throw new Error(`shards never reached the server cache: ${missing.slice(0, 10).join(', ')}; page: ${page?.problems.join(' | ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  browser = await launchBrowser();
  // Audio runs of 3 s rather than 30: the 10 s fixture then has runs that meet, as a long content would.
  server = await startTestServer({ audioJobSeconds: 3 });
  source = await fixture('av-2997');
  dir = fs.mkdtempSync(path.join(server.dataDir, 'export-'));
  const r = await upload(server.url, fs.readFileSync(source), `?renditions=${encodeURIComponent(JSON.stringify(LADDER))}`);
  expect(r.status).toBe(201);
  id = r.json.id;
});

afterAll(async () => {
  await page?.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

describe('export.mp4', () => {
  it('answers 404 for an unknown content, 409 before any shard is cached, 400 for a rendition that is not there', async () => {
    const unknown = await fetch(`${server.url}/api/contents/nope/export.mp4`);
    expect(unknown.status).toBe(404);
    expect((await unknown.json()).error.code).toBe('unknown-content');

    const early = await fetch(exportUrl());
    expect(early.status).toBe(409);
    const body = await early.json();
    expect(body.error.code).toBe('not-cached');
    expect(body.error.message).toMatch(/no shard .*in the server cache yet.*\/encode/);

    const bad = await fetch(exportUrl('?rendition=4k'));
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.message).toMatch(/hq, lo/);
  });

  it('rebuilds the source from the cached shards: every frame, in place, with seamless audio', async () => {
    page = await newPage(browser);
    await page.page.goto(`${server.url}/encode?persist=0`);
    const end = Date.now() + 240_000;
    for (;;) {
      const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
      if (c.status === 'ready') {
        map = c.shardMap;
        break;
      }
      if (Date.now() > end) throw new Error(`content not encoded in time (status ${c.status}); page: ${page.problems.join(' | ')}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // Shards are accepted before the tab uploads them: wait for the uploads too.
    await waitCached(60_000);

    const { file, res, ms } = await download('', 'full.mp4');
    console.log(`export of the 10 s fixture: ${(fs.statSync(file).size / 1024).toFixed(0)} KiB in ${ms.toFixed(0)} ms`);
    expect(res.headers.get('content-type')).toBe('video/mp4');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${id}.mp4"`);
    expect(res.headers.get('x-export-rendition')).toBe('hq');
    expect(res.headers.get('x-export-video-shards')).toBe(String(map.shards.length));
    expect([res.headers.get('x-export-held'), res.headers.get('x-export-silent')]).toEqual(['0', '0']);

    const out = await streams(file);
    const src = await streams(source);
    expect([out.video.codec_name, out.video.width, out.video.height]).toEqual(['h264', 320, 180]);
    expect([out.audio.codec_name, Number(out.audio.sample_rate), out.audio.channels]).toEqual(['aac', 48000, 2]);
    expect(await decodeErrors(file)).toBe('');

    const frames = await countFrames(file);
    expect(Math.abs(frames - (await countFrames(source)))).toBeLessThanOrEqual(1);
    expect(await psnr(file, source, 320, 180)).toBeGreaterThanOrEqual(30);

    const srcAudio = Number(src.audio.duration);
    expect(Math.abs(Number(out.audio.duration) - srcAudio) / srcAudio).toBeLessThan(0.01);
    expect(Number(out.audio.start_time)).toBeCloseTo(0, 3);
    // The referee itself finds no silence in the source's tone.
    expect(await silences(source, srcAudio)).toEqual([]);
    expect(await silences(file, srcAudio)).toEqual([]);
    console.log(`export: ${frames} frames, PSNR ${(await psnr(file, source, 320, 180)).toFixed(2)} dB, audio ${out.audio.duration} s (source ${srcAudio} s)`);
  });

  it('audio is sample-exact, and where encode runs meet it is as clean as anywhere else', async () => {
    const joins = map.shards.filter((s) => (s.renditions.audio?.lead ?? 0) > 1024).map((s) => Math.round(s.renditions.audio!.start! * 48000));
    expect(joins.length).toBeGreaterThanOrEqual(2);
    const a = await pcm(source);
    const b = await pcm(path.join(dir, 'full.mp4'));
    expect(b.length).toBe(a.length);
    // Aligned, the export differs from the source by coding noise; one sample off is far worse.
    const aligned = rmsDiff(a, b, 0, a.length);
    for (const lag of [-1, 1]) expect(rmsDiff(a, b, 0, a.length, lag)).toBeGreaterThan(3 * aligned);
    for (const j of joins) {
      const near = rmsDiff(a, b, j - 1024, j + 2048);
      console.log(`audio join at ${(j / 48000).toFixed(3)} s: error ${near.toExponential(2)} rms (whole file ${aligned.toExponential(2)})`);
      expect(near).toBeLessThan(3 * aligned);
    }
  });

  it('answers requests that come together, and HEAD', async () => {
    const [a, b] = await Promise.all([fetch(exportUrl()), fetch(exportUrl())]);
    const [x, y] = [new Uint8Array(await a.arrayBuffer()), new Uint8Array(await b.arrayBuffer())];
    expect([a.status, b.status]).toEqual([200, 200]);
    // Same length rather than same bytes: the moov carries its creation time in seconds.
    expect(y.byteLength).toBe(x.byteLength);
    const head = await fetch(exportUrl(), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(x.byteLength);
  });

  it('exports another rendition on request', async () => {
    const { file, res } = await download('?rendition=lo', 'lo.mp4');
    expect(res.headers.get('x-export-rendition')).toBe('lo');
    const out = await streams(file);
    expect([out.video.width, out.video.height]).toEqual([160, 90]);
    expect(await countFrames(file)).toBe(map.shards.reduce((n, s) => n + s.frames, 0));
    expect(await decodeErrors(file)).toBe('');
  });

  it('plays in Chromium, and seeks', async () => {
    const p = page!.page;
    const r = await p.evaluate(async (url) => {
      // As a downloaded file: the endpoint answers no range requests (each would rebuild the file).
      const blob = await (await fetch(url)).blob();
      const v = document.createElement('video');
      v.muted = true;
      v.src = URL.createObjectURL(blob);
      document.body.append(v);
      await new Promise((ok, fail) => {
        v.onloadedmetadata = ok;
        v.onerror = () => fail(new Error(`media error ${v.error?.code}: ${v.error?.message}`));
      });
      v.currentTime = 9;
      await new Promise((ok) => (v.onseeked = ok));
      await v.play();
      await new Promise((ok) => setTimeout(ok, 300));
      const out = { duration: v.duration, width: v.videoWidth, height: v.videoHeight, time: v.currentTime };
      v.remove();
      URL.revokeObjectURL(v.src);
      return out;
    }, exportUrl());
    expect(r.duration).toBeCloseTo(10.01, 1);
    expect([r.width, r.height]).toEqual([320, 180]);
    expect(r.time).toBeGreaterThan(9);
  });

  it('conceals shards missing from the cache: the frame before a hole is held, missing audio is silence', async () => {
    const video = 5;
    const audio = 20;
    fs.rmSync(cacheFile('hq', video));
    fs.rmSync(cacheFile('audio', audio));
    const { file, res } = await download('', 'holes.mp4');
    expect([res.headers.get('x-export-held'), res.headers.get('x-export-silent')]).toEqual(['1', '1']);
    expect(await decodeErrors(file)).toBe('');

    const out = await streams(file);
    expect(out.duration).toBeCloseTo(map.shards.at(-1)!.start + map.shards.at(-1)!.duration, 2);
    // The hole's frames are not in the file; the previous frame lasts across it.
    expect(await countFrames(file)).toBe(map.shards.reduce((n, s) => n + s.frames, 0) - map.shards[video]!.frames);
    const j = await ffprobeJson(file, ['-select_streams', 'v:0', '-show_entries', 'packet=pts_time,duration_time']);
    const packets = (j.packets as { pts_time: string; duration_time: string }[]).map((p) => ({ t: Number(p.pts_time), d: Number(p.duration_time) }));
    const before = packets.filter((p) => p.t < map.shards[video]!.start - 1e-6).at(-1)!;
    expect(before.t + before.d).toBeCloseTo(map.shards[video + 1]!.start, 3);

    // Exactly one silence, where the missing audio shard was (the codec's overlap blurs its edges by up to one frame).
    const st = map.shards[audio]!.renditions.audio!;
    const srcAudio = Number((await streams(source)).audio.duration);
    const found = await silences(file, srcAudio);
    expect(found).toHaveLength(1);
    const [from, to] = found[0]!;
    const frame = 1024 / 48000;
    expect(from).toBeGreaterThanOrEqual(st.start! - 1e-3);
    expect(from).toBeLessThanOrEqual(st.start! + frame);
    expect(to).toBeGreaterThanOrEqual(st.start! + st.samples! / 48000 - frame);
    expect(to).toBeLessThanOrEqual(st.start! + st.samples! / 48000 + frame);
  });
});
