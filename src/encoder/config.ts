/**
 * Every tunable of the encoder tab and its default, in one place. A page can
 * override any of them with a query parameter of the same name
 * (`/encode?recycleAfterExecs=5&watchdogMs=10000`), which the tests use.
 */
export interface EncoderConfig {
  /**
   * Terminate and reload the ffmpeg core after this many execs. A loaded core
   * crashes with "memory access out of bounds" after roughly 45-100 execs here
   * (DESIGN.md), so recycle well before.
   */
  recycleAfterExecs: number;
  /** An exec with no progress or log output for this long is killed and its job failed, ms. */
  watchdogMs: number;
  /** libx264 preset for video jobs. */
  preset: string;
  /**
   * Which ffmpeg.wasm core runs jobs: 'single' (default) or 'multi', the
   * multi-thread core with `-threads 2`, used only when the page is
   * cross-origin isolated and dropped for the single-thread core on its first
   * crash or stall. See tests/bench (a/d) for what it gains here.
   */
  ffmpegCore: 'single' | 'multi';
  /** Bytes of shards kept in memory (and IndexedDB); least recently served go first. */
  storeBudgetBytes: number;
  /** Shard transfers served at once, over all peers. */
  maxConcurrentServes: number;
  /** Peers connected at once; the least recently used is closed past this. */
  maxPeers: number;
  /** Persist shards to IndexedDB so a reload keeps serving them. */
  persist: boolean;
  /** Run the join benchmark (a short encode) before asking for work. */
  benchmark: boolean;
  /** Delay between reconnect attempts to the pool, ms. */
  reconnectMs: number;
  /** Give up copying a shard from one holder after this long, ms. */
  replicateTimeoutMs: number;
  /**
   * Engines this tab offers the pool, comma-separated: "ffmpeg-wasm" (always
   * on: audio and the fallback need it) and "webcodecs" (when the browser has
   * it and its benchmark passes).
   */
  engines: string;
  /**
   * WebCodecs H.264 (OpenH264) gets this times the rendition's bitrate. 0 (the
   * default): by rendition height from WEBCODECS_H264_BITRATE_SCALES, so it
   * reaches the PSNR libx264 veryfast reaches at the rendition's bitrate.
   */
  webcodecsH264BitrateScale: number;
  /**
   * Test hook: an engine whose jobs fail after `failAfterFrames` frames, as a
   * broken encoder would. "webcodecs" exercises the fallback to ffmpeg.wasm
   * (`/encode?failEngine=webcodecs&failAfterFrames=10`); "ffmpeg-multi" kills
   * the multi-thread core mid-job, as its crashes do, to exercise the fallback
   * to the single-thread core (`/encode?ffmpegCore=multi&failEngine=ffmpeg-multi`).
   * Empty: no failure.
   */
  failEngine: string;
  failAfterFrames: number;
  /**
   * After this many WebCodecs H.264 failures in a row the tab stops using
   * WebCodecs for H.264 (every job then runs on ffmpeg.wasm at once, rather
   * than failing over mid-job each time).
   */
  webcodecsMaxFailures: number;
}

/**
 * Bitrate factor for WebCodecs H.264 (Chromium 150's OpenH264; no quantizer
 * mode for H.264 here) per rendition height, so its PSNR comes within 0.5 dB
 * of libx264 veryfast (ffmpeg.wasm) at the rendition's bitrate.
 *
 * Measured with `BENCH_WC_SCALES=1.5,2,2.5 npm run bench -- --only webcodecs
 * --runs 1` and the plain bench (scale 1), on the 20 s 720p testsrc2 clip
 * (fixture bench-720p), PSNR against the source by native ffmpeg, default
 * ladder bitrates (553 kb/s at 360p, 2212 kb/s at 720p):
 *
 * | rung | x264 (ffmpeg.wasm) | WebCodecs x1 | x1.5 | x2 | x2.5 |
 * | 640x360 | 42.0 dB | 40.1 | 41.4 | 42.2 | 42.8 |
 * | 1280x720 | 41.8 dB | 39.9 | 42.6 | 45.6 | 48.0 |
 *
 * OpenH264 follows the bitrate it is given (x1: 0.98-1.1x the bytes of x264),
 * so equal PSNR costs bytes: about 1.6x at 360p and 1.35x at 720p. Synthetic
 * content; re-measure on real footage before trusting the exact figures.
 */
export const WEBCODECS_H264_BITRATE_SCALES: readonly { maxHeight: number; scale: number }[] = [
  { maxHeight: 480, scale: 1.6 },
  { maxHeight: Infinity, scale: 1.35 },
];

/** The bitrate factor for WebCodecs H.264 at a rendition height: the override when set, else the table. */
export function webCodecsH264BitrateScale(height: number, override = 0): number {
  if (override > 0) return override;
  return WEBCODECS_H264_BITRATE_SCALES.find((r) => height <= r.maxHeight)!.scale;
}

export const DEFAULT_ENCODER_CONFIG: EncoderConfig = {
  recycleAfterExecs: 20,
  watchdogMs: 20_000,
  preset: 'veryfast',
  ffmpegCore: 'single',
  storeBudgetBytes: 256 * 2 ** 20,
  maxConcurrentServes: 4,
  maxPeers: 16,
  persist: true,
  benchmark: true,
  reconnectMs: 1000,
  replicateTimeoutMs: 10_000,
  engines: 'ffmpeg-wasm,webcodecs',
  webcodecsH264BitrateScale: 0,
  failEngine: '',
  failAfterFrames: 10,
  webcodecsMaxFailures: 3,
};

/** Reads overrides from a query string; unknown or malformed values are ignored with a warning. */
export function encoderConfigFrom(search: string, base: EncoderConfig = DEFAULT_ENCODER_CONFIG): EncoderConfig {
  const params = new URLSearchParams(search);
  const out: EncoderConfig = { ...base };
  for (const [k, raw] of params) {
    if (!(k in base)) continue;
    const key = k as keyof EncoderConfig;
    const def = base[key];
    let v: unknown;
    if (typeof def === 'number') v = Number(raw);
    else if (typeof def === 'boolean') v = raw === '1' || raw === 'true';
    else v = raw;
    if (key === 'ffmpegCore' && v !== 'single' && v !== 'multi') {
      console.warn(`ignoring ${k}=${raw}: not 'single' or 'multi'`);
      continue;
    }
    if (typeof v === 'number' && !Number.isFinite(v)) {
      console.warn(`ignoring ${k}=${raw}: not a number`);
      continue;
    }
    (out as unknown as Record<string, unknown>)[key] = v;
  }
  return out;
}
