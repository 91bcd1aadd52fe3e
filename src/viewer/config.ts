/**
 * Every tunable of the viewer and its default, in one place. Any can be
 * overridden by a query parameter of the same name on the watch page
 * (`/watch/ID?lookAheadSeconds=2&cache=0`).
 */
export interface ViewerConfig {
  /** Fetch shards up to this far ahead of the playhead, seconds. */
  lookAheadSeconds: number;
  /** Shard fetches in flight at once. */
  maxConcurrentFetches: number;
  /** Give up on one source of a shard after this long, ms. */
  fetchTimeoutMs: number;
  /** Give up connecting to a peer after this long, ms. */
  connectTimeoutMs: number;
  /** Peer connections kept at once (each costs ~13 MiB). */
  maxPeers: number;
  /** Use the server's cache as the last source before skipping. */
  cache: boolean;
  /** Refresh who-holds-what this often while playing, ms. */
  locateEveryMs: number;
  /** Share of the measured throughput the ABR allows itself. */
  abrSafety: number;
  /** Throughput assumed before anything is measured, bits/s. */
  abrInitialBps: number;
  /** Start playing once this much is buffered, seconds. */
  startBufferSeconds: number;
  /** A shard nobody can provide is retried for this long before it is skipped, ms. */
  missingGraceMs: number;
  /** Verified shards kept after playing, for the download button, bytes; the rest is fetched again. */
  keepForDownloadBytes: number;
  /** Before playback has started, a missing shard that holds up the start is waited for this long, ms. */
  startWaitMs: number;
}

export const DEFAULT_VIEWER_CONFIG: ViewerConfig = {
  lookAheadSeconds: 6,
  maxConcurrentFetches: 4,
  fetchTimeoutMs: 4000,
  connectTimeoutMs: 5000,
  maxPeers: 8,
  cache: true,
  locateEveryMs: 1000,
  abrSafety: 0.7,
  abrInitialBps: 5_000_000,
  startBufferSeconds: 0.6,
  missingGraceMs: 1500,
  startWaitMs: 10_000,
  keepForDownloadBytes: 256 * 2 ** 20,
};

export function viewerConfigFrom(search: string, base: ViewerConfig = DEFAULT_VIEWER_CONFIG): ViewerConfig {
  const out: ViewerConfig = { ...base };
  for (const [k, raw] of new URLSearchParams(search)) {
    if (!(k in base)) continue;
    const def = base[k as keyof ViewerConfig];
    const v = typeof def === 'boolean' ? raw === '1' || raw === 'true' : Number(raw);
    if (typeof v === 'number' && !Number.isFinite(v)) continue;
    (out as unknown as Record<string, unknown>)[k] = v;
  }
  return out;
}
