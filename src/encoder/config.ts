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
   * WebCodecs H.264 (OpenH264) gets this times the rendition's bitrate, so it
   * reaches the PSNR libx264 (veryfast) reaches at the rendition's bitrate.
   * See WEBCODECS_H264_BITRATE_SCALE for the measurement.
   */
  webcodecsH264BitrateScale: number;
  /**
   * Test hook: an engine name ("webcodecs") whose jobs fail after
   * `failAfterFrames` frames, as a broken encoder would, to exercise the
   * fallback to ffmpeg.wasm (`/encode?failEngine=webcodecs&failAfterFrames=10`).
   * Empty: no failure.
   */
  failEngine: string;
  failAfterFrames: number;
}

/**
 * Bitrate factor for WebCodecs H.264 against libx264 veryfast at the same
 * rendition bitrate. PLACEHOLDER_MEASUREMENT
 */
export const WEBCODECS_H264_BITRATE_SCALE = 1;

export const DEFAULT_ENCODER_CONFIG: EncoderConfig = {
  recycleAfterExecs: 20,
  watchdogMs: 20_000,
  preset: 'veryfast',
  storeBudgetBytes: 256 * 2 ** 20,
  maxConcurrentServes: 4,
  maxPeers: 16,
  persist: true,
  benchmark: true,
  reconnectMs: 1000,
  replicateTimeoutMs: 10_000,
  engines: 'ffmpeg-wasm,webcodecs',
  webcodecsH264BitrateScale: WEBCODECS_H264_BITRATE_SCALE,
  failEngine: '',
  failAfterFrames: 10,
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
    if (typeof v === 'number' && !Number.isFinite(v)) {
      console.warn(`ignoring ${k}=${raw}: not a number`);
      continue;
    }
    (out as unknown as Record<string, unknown>)[key] = v;
  }
  return out;
}
