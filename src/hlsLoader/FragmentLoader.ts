/**
 * The hls.js side of the plug-in: a fragment loader class (hls.js's `fLoader`)
 * that hands shardcast segments to a SegmentSource and every other request to
 * hls.js's own loader. It owns one request at a time and its hls.js stats;
 * nothing here knows about peers (see ./ShardcastHls.ts).
 *
 * After p2p-media-loader's hls.js integration (FragmentLoaderBase): the same
 * Loader interface, the same delegation to `config.loader` for what is not
 * ours. hls.js is imported for its types only, so the page's own hls.js build
 * is the one that runs.
 */
import type {
  FragmentLoaderConstructor,
  FragmentLoaderContext,
  HlsConfig,
  Loader,
  LoaderCallbacks,
  LoaderConfiguration,
  LoaderContext,
  LoaderStats,
} from 'hls.js';

/** What the loader needs from a session: whether a URL is one of its segments, and the segment's bytes. */
export interface SegmentSource {
  /** Whether `url` (absolute) names a segment of a shardcast content this source serves. */
  owns(url: string): boolean;
  /**
   * The bytes of the init or media segment at `url`, built only from verified
   * shards. Rejects with an Error whose message says which shards no source had.
   */
  load(url: string): Promise<Uint8Array>;
  /** Bytes hls.js's own loader fetched over HTTP (playlists, and anything not ours), for the stats. */
  countHttp(bytes: number): void;
}

/** hls.js's LoadStats shape, zeroed. */
export function freshStats(): LoaderStats {
  return {
    aborted: false,
    loaded: 0,
    retry: 0,
    total: 0,
    chunkCount: 0,
    bwEstimate: 0,
    loading: { start: 0, first: 0, end: 0 },
    parsing: { start: 0, end: 0 },
    buffering: { start: 0, first: 0, end: 0 },
  };
}

/** A fragment loader class bound to `source`, for `new Hls({ fLoader })`. */
export function fragmentLoaderFor(source: SegmentSource): FragmentLoaderConstructor {
  return class ShardcastFragmentLoader implements Loader<FragmentLoaderContext> {
    context: FragmentLoaderContext | null = null;
    private readonly fallback: Loader<LoaderContext>;
    /** Our own stats while we serve the request; hls.js's loader keeps its own otherwise. */
    private own: LoaderStats | undefined;
    /** Bumped by abort/destroy and each load, so a late answer to an old request is dropped. */
    private generation = 0;
    private callbacks: LoaderCallbacks<FragmentLoaderContext> | undefined;

    constructor(config: HlsConfig) {
      this.fallback = new config.loader(config);
    }

    get stats(): LoaderStats {
      return this.own ?? this.fallback.stats;
    }

    load(context: FragmentLoaderContext, config: LoaderConfiguration, callbacks: LoaderCallbacks<FragmentLoaderContext>): void {
      this.context = context;
      const generation = ++this.generation;
      if (!source.owns(context.url)) {
        this.own = undefined;
        const onSuccess = callbacks.onSuccess;
        const counted: LoaderCallbacks<FragmentLoaderContext> = {
          ...callbacks,
          onSuccess: (response, stats, ctx, details) => {
            source.countHttp(stats.loaded);
            onSuccess(response, stats, ctx, details);
          },
        };
        this.fallback.load(context, config, counted as unknown as LoaderCallbacks<LoaderContext>);
        return;
      }
      const stats = freshStats();
      this.own = stats;
      this.callbacks = callbacks;
      stats.loading.start = performance.now();
      source.load(context.url).then(
        (bytes) => {
          if (generation !== this.generation) return;
          const now = performance.now();
          stats.loading.first = stats.loading.end = now;
          stats.loaded = stats.total = bytes.byteLength;
          stats.chunkCount = 1;
          const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
          callbacks.onSuccess({ url: context.url, data }, stats, context, null);
        },
        (e: unknown) => {
          if (generation !== this.generation) return;
          stats.loading.end = performance.now();
          // 404: hls.js treats it as a failed fragment and retries, or switches level, by its own policy.
          callbacks.onError({ code: 404, text: (e as Error).message }, context, null, stats);
        },
      );
    }

    abort(): void {
      this.generation++;
      if (this.own) {
        this.own.aborted = true;
        if (this.context) this.callbacks?.onAbort?.(this.own, this.context, null);
        this.callbacks = undefined;
        return;
      }
      this.fallback.abort();
    }

    destroy(): void {
      this.generation++;
      this.context = null;
      this.fallback.destroy();
    }
  };
}
