import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright';
import { launchBrowser, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { startTestServer, upload } from '../harness/testServer.ts';
import { type Bench, type Sample, open, waitCached, waitReady } from './common.ts';
import { psnr, run, x264Args } from './encoding.ts';
import { NO_CROSS_CHECKS, recordJobs, tabCounters } from './pool.ts';

/** Rungs of the default ladder for the 1280x720 30 fps bench clip (0.08 bits per pixel; src/shared/shardMap.ts). */
export const WEBCODECS_RUNGS = [
  [640, 360, 553_000],
  [1280, 720, 2_212_000],
] as const;

/**
 * Calibration of WebCodecs H.264 rate control (src/encoder/config.ts): with
 * BENCH_WC_SCALES=1,1.5,2 the webcodecs bench encodes only with WebCodecs,
 * once per bitrate scale and rung, and reports PSNR and bytes.
 */
export const WC_SCALES = process.env.BENCH_WC_SCALES?.split(',').map(Number);

export interface PoolEncode {
  /** From the first job starting in a tab to every shard accepted (upload and probe excluded), ms. */
  ms: number;
  bytes: number;
  psnr: number;
  /** Sums over the tabs: source-slice fetch and encode time, ms. */
  fetchMs: number;
  encodeMs: number;
  jobs: number;
}

/**
 * Encodes the bench clip through a fresh server and `tabs` encoder tabs that
 * offer `engines`, one H.264 rendition: wall time from the first job's start
 * to every shard accepted, accepted bytes, and PSNR of the server's export against the source
 * (native ffmpeg as referee).
 */
export async function poolEncode(
  browser: Browser,
  source: string,
  tabs: number,
  engines: string,
  [w, h, bitrate]: readonly [number, number, number],
  dir: string,
  params = '',
): Promise<PoolEncode> {
  const server = await startTestServer(NO_CROSS_CHECKS);
  const pages: TrackedPage[] = [];
  try {
    const ts: TrackedPage[] = [];
    for (let i = 0; i < tabs; i++) {
      const t = await open(browser, `${server.url}/encode?persist=0&engines=${engines}${params}`, pages);
      await t.page.waitForFunction(() => (window as any).shardcastEncoder?.state?.phase === 'idle', null, { timeout: 120_000 });
      await recordJobs(t);
      ts.push(t);
    }
    const ladder = [{ id: `${h}p`, video: { codec: 'h264', width: w, height: h, bitrate } }];
    const { json } = await upload(server.url, fs.readFileSync(source), `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
    const map = await waitReady(server, json.id, 300_000, 50);
    const end = Date.now();
    const jobs = (await Promise.all(ts.map(tabCounters))).flatMap((c) => c.jobs);
    const ms = end - Math.min(...jobs.map((j) => j.start));
    const want = engines.includes('webcodecs') ? 'webcodecs@' : 'ffmpeg-wasm@';
    const states = map.shards.map((s) => s.renditions[`${h}p`]!);
    const other = states.filter((st) => !st.engine?.startsWith(want)).length;
    if (other) throw new Error(`${other} shards were not made by ${want} (${states.find((st) => !st.engine?.startsWith(want))?.engine})`);
    await waitCached(server, json.id, map);
    const file = path.join(dir, `pool-${tabs}-${engines}-${h}.mp4`);
    fs.writeFileSync(file, Buffer.from(await (await fetch(`${server.url}/api/contents/${json.id}/export.mp4?rendition=${h}p`)).arrayBuffer()));
    const st = await Promise.all(
      ts.map((t) => t.page.evaluate(() => (window as any).shardcastEncoder.state as { fetchMs: number; encodeMs: number; jobsDone: number })),
    );
    return {
      ms,
      bytes: states.reduce((a, x) => a + (x.size ?? 0), 0),
      psnr: psnr(file, source, w, h),
      fetchMs: st.reduce((a, x) => a + x.fetchMs, 0),
      encodeMs: st.reduce((a, x) => a + x.encodeMs, 0),
      jobs: st.reduce((a, x) => a + x.jobsDone, 0),
    };
  } finally {
    for (const p of pages) await p.context.close().catch(() => {});
    await server.destroy();
  }
}

/**
 * h. WebCodecs H.264 (OpenH264, with its bitrate scale) against ffmpeg.wasm
 * x264 veryfast, both through the pool on the same 20 s clip: one tab each at
 * 360p and 720p (fps, bytes, PSNR; pool time from the first job to all
 * accepted); then two WebCodecs tabs against native ffmpeg (libx264 veryfast,
 * -threads 2, one 20 s GOP) on this machine at 720p at equal PSNR (nativeAtPsnr):
 * wall time as a ratio, PSNR and bytes of both.
 */
export const webcodecs: Bench = async (runIndex) => {
  const source = await fixture('bench-720p');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-wc-'));
  const browser = await launchBrowser();
  const out: Sample[] = [];
  const frames = 600;
  try {
    if (WC_SCALES) {
      for (const scale of WC_SCALES) {
        for (const rung of WEBCODECS_RUNGS) {
          const wc = await poolEncode(browser, source, 1, 'ffmpeg-wasm,webcodecs', rung, dir, `&webcodecsH264BitrateScale=${scale}`);
          out.push(
            { metric: `WebCodecs ${rung[0]}x${rung[1]}, bitrate x${scale}: PSNR`, unit: 'dB', value: wc.psnr },
            { metric: `WebCodecs ${rung[0]}x${rung[1]}, bitrate x${scale}: bytes`, unit: 'kB', value: wc.bytes / 1000 },
          );
        }
      }
      return out;
    }
    // The one-tab ffmpeg.wasm encodes take most of this bench (~80 s at 720p): they run in the
    // first run only, which keeps `npm run bench` under 20 minutes. Their bytes and PSNR are the
    // same every run (ffmpeg.wasm is deterministic); bench a repeats ffmpeg.wasm's speed.
    for (const rung of runIndex === 0 ? WEBCODECS_RUNGS : []) {
      const [w, h] = rung;
      const ff = await poolEncode(browser, source, 1, 'ffmpeg-wasm', rung, dir);
      const wc = await poolEncode(browser, source, 1, 'ffmpeg-wasm,webcodecs', rung, dir);
      out.push(
        { metric: `1 tab ${w}x${h}: ffmpeg.wasm fps (pool wall time)`, unit: 'fps', value: frames / (ff.ms / 1000) },
        { metric: `1 tab ${w}x${h}: WebCodecs fps (pool wall time)`, unit: 'fps', value: frames / (wc.ms / 1000) },
        { metric: `1 tab ${w}x${h}: WebCodecs / ffmpeg.wasm speed`, unit: 'ratio', value: ff.ms / wc.ms },
        { metric: `1 tab ${w}x${h}: ffmpeg.wasm bytes`, unit: 'kB', value: ff.bytes / 1000 },
        { metric: `1 tab ${w}x${h}: WebCodecs bytes`, unit: 'kB', value: wc.bytes / 1000 },
        { metric: `1 tab ${w}x${h}: ffmpeg.wasm PSNR`, unit: 'dB', value: ff.psnr },
        { metric: `1 tab ${w}x${h}: WebCodecs PSNR`, unit: 'dB', value: wc.psnr },
      );
    }
    const rung = WEBCODECS_RUNGS[1];
    const [w, h] = rung;
    const poolWc = await poolEncode(browser, source, 2, 'ffmpeg-wasm,webcodecs', rung, dir);
    const native = nativeAtPsnr(source, w, h, poolWc.psnr, dir);
    const equal = `native at CRF ${native.crf.toFixed(2)}: ${native.psnr.toFixed(2)} dB against the tabs' ${poolWc.psnr.toFixed(2)} dB`;
    out.push(
      { metric: `2 WebCodecs tabs, ${w}x${h}: pool wall time (first job to all accepted)`, unit: 's', value: poolWc.ms / 1000 },
      { metric: `native ffmpeg x264 veryfast -threads 2, ${w}x${h}, equal PSNR: wall time`, unit: 's', value: native.ms / 1000, note: equal },
      {
        metric: `2 WebCodecs tabs / native (-threads 2), ${w}x${h}, equal PSNR: speed`,
        unit: 'ratio',
        value: native.ms / poolWc.ms,
        note: '> 1: the pool is faster',
      },
      { metric: `2 WebCodecs tabs, ${w}x${h}: PSNR`, unit: 'dB', value: poolWc.psnr },
      { metric: `native, ${w}x${h}: PSNR`, unit: 'dB', value: native.psnr, note: equal },
      { metric: `2 WebCodecs tabs, ${w}x${h}: bytes`, unit: 'kB', value: poolWc.bytes / 1000 },
      { metric: `native, ${w}x${h}, equal PSNR: bytes`, unit: 'kB', value: native.bytes / 1000, note: 'one 20 s GOP' },
      { metric: `2 WebCodecs tabs, ${w}x${h}: time in fetch (both tabs)`, unit: 's', value: poolWc.fetchMs / 1000 },
      { metric: `2 WebCodecs tabs, ${w}x${h}: time in decode+encode+mux (both tabs)`, unit: 's', value: poolWc.encodeMs / 1000 },
      { metric: `2 WebCodecs tabs, ${w}x${h}: jobs`, unit: 'jobs', value: poolWc.jobs },
    );
    return out;
  } finally {
    await browser.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
};

/** Where the CRF search of nativeAtPsnr starts: the last run's answer. */
export let nativeCrfGuess = 23;

/** PSNR tolerance of "equal PSNR", dB. */
export const EQUAL_PSNR_DB = 0.3;

/**
 * Native ffmpeg (libx264 veryfast, the job's x264 settings, -threads 2, one
 * 20 s GOP) at the CRF whose PSNR is within EQUAL_PSNR_DB/2 of `targetDb`,
 * found by the secant method on (CRF, PSNR); the wall time, bytes and PSNR of
 * that encode (read source, decode, scale, encode, mux: the phases a pool job
 * has after its slice is fetched). Throws if no CRF gets within EQUAL_PSNR_DB.
 */
export function nativeAtPsnr(source: string, w: number, h: number, targetDb: number, dir: string): { crf: number; ms: number; bytes: number; psnr: number } {
  const file = path.join(dir, `native-${h}.mp4`);
  const encode = (crf: number) => {
    const t0 = performance.now();
    run(['-i', source, '-an', ...x264Args(w, h, ['-crf', crf.toFixed(2)], ['-g', '600']), '-threads', '2', '-f', 'mp4', file]);
    const ms = performance.now() - t0;
    return { crf, ms, bytes: fs.statSync(file).size, psnr: psnr(file, source, w, h) };
  };
  const tries = [encode(nativeCrfGuess)];
  // About 0.5 dB per CRF step on this clip: the first step, before there are two points.
  tries.push(encode(Math.min(51, Math.max(0, nativeCrfGuess + (tries[0]!.psnr - targetDb) / 0.5))));
  for (let i = 0; i < 4; i++) {
    const best = [...tries].sort((a, b) => Math.abs(a.psnr - targetDb) - Math.abs(b.psnr - targetDb));
    if (Math.abs(best[0]!.psnr - targetDb) <= EQUAL_PSNR_DB / 2) break;
    const [a, b] = best;
    const slope = (b!.psnr - a!.psnr) / (b!.crf - a!.crf || 1);
    const next = a!.crf + (targetDb - a!.psnr) / (slope < 0 ? slope : -0.5);
    tries.push(encode(Math.min(51, Math.max(0, next))));
  }
  const best = [...tries].sort((a, b) => Math.abs(a.psnr - targetDb) - Math.abs(b.psnr - targetDb))[0]!;
  if (Math.abs(best.psnr - targetDb) > EQUAL_PSNR_DB)
    throw new Error(
      `no native CRF within ${EQUAL_PSNR_DB} dB of ${targetDb.toFixed(2)} dB: ${tries.map((t) => `CRF ${t.crf.toFixed(2)} ${t.psnr.toFixed(2)} dB`).join(', ')}`,
    );
  nativeCrfGuess = best.crf;
  // The matched encode timed once more, so a first-run cold cache does not land in the figure.
  const timed = encode(best.crf);
  return timed;
}
