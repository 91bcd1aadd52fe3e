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
}

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
