/**
 * The hls.js loader plug-in's pure parts: which segment a URL names, which
 * shards each segment is made of (the HLS plan's own grouping), and the
 * fragment loader's routing between shardcast segments and hls.js's own loader.
 */
import type { FragmentLoaderContext, HlsConfig, Loader, LoaderCallbacks, LoaderContext, LoaderStats } from 'hls.js';
import { describe, expect, it } from 'vitest';
import { fragmentLoaderFor, freshStats, type SegmentSource } from '../../src/hlsLoader/FragmentLoader.ts';
import { parseSegmentUrl, shardsOf } from '../../src/hlsLoader/segments.ts';
import { apiUrl } from '../../src/shared/api.ts';
import { planHls } from '../../src/shared/hls/plan.ts';
import { buildShardMap, type Rendition } from '../../src/shared/shardMap.ts';
import { avFacts } from './facts.ts';

const SERVER = 'https://video.example.org';
const at = (path: string) => SERVER + path;

describe('parseSegmentUrl', () => {
  it('reads back what the URL builders write, for init and media segments', () => {
    expect(parseSegmentUrl(at(apiUrl.hlsSegment('c1', '360p', 7)), SERVER)).toEqual({ contentId: 'c1', rendition: '360p', kind: 'media', n: 7 });
    expect(parseSegmentUrl(at(apiUrl.hlsInit('c1', 'audio', 0)), SERVER)).toEqual({ contentId: 'c1', rendition: 'audio', kind: 'init', n: 0 });
    // A query (a token) does not change which segment it is.
    expect(parseSegmentUrl(`${at(apiUrl.hlsSegment('c1', '360p', 3))}?token=x`, SERVER)?.n).toBe(3);
  });

  it('leaves everything else to hls.js: another origin, playlists, other API paths, malformed numbers', () => {
    expect(parseSegmentUrl(`https://cdn.example.com${apiUrl.hlsSegment('c1', '360p', 1)}`, SERVER)).toBeUndefined();
    expect(parseSegmentUrl(`http://video.example.org${apiUrl.hlsSegment('c1', '360p', 1)}`, SERVER)).toBeUndefined();
    expect(parseSegmentUrl(at(apiUrl.hlsMaster('c1')), SERVER)).toBeUndefined();
    expect(parseSegmentUrl(at(apiUrl.hlsPlaylist('c1', '360p')), SERVER)).toBeUndefined();
    expect(parseSegmentUrl(at(apiUrl.shard({ contentId: 'c1', rendition: '360p', index: 1 })), SERVER)).toBeUndefined();
    for (const n of ['-1', '1e3', '0x10', '', '99999999999', '1.5']) {
      expect(parseSegmentUrl(at(`/api/contents/c1/hls/360p/seg-${n}.m4s`), SERVER), n).toBeUndefined();
    }
    expect(parseSegmentUrl(at('/api/contents/c1/hls/360p/seg-1xm4s'), SERVER)).toBeUndefined();
    expect(parseSegmentUrl(at('/api/contents/%E0%A4%A/hls/360p/seg-1.m4s'), SERVER)).toBeUndefined();
    expect(parseSegmentUrl('not a url', SERVER)).toBeUndefined();
  });
});

describe('shardsOf: segment → shards', () => {
  const ladder: Rendition[] = [
    { id: '360p', video: { codec: 'h264', width: 640, height: 360, bitrate: 800_000 } },
    { id: '180p', video: { codec: 'h264', width: 320, height: 180, bitrate: 200_000 } },
    { id: 'audio', audio: { codec: 'aac', bitrate: 96_000, sampleRate: 48000, channels: 2 } },
  ];
  const map = buildShardMap({ contentId: 'c', facts: avFacts(9.5, { width: 640, height: 360 }), renditions: ladder });
  const plan = planHls(map);

  it('media segments of each rendition take every shard once, in map order, a few at a time', () => {
    for (const r of plan.renditions) {
      const taken: number[] = [];
      for (let n = 0; n < r.segments.length; n++) {
        const { shards } = shardsOf(plan, { contentId: 'c', rendition: r.id, kind: 'media', n });
        expect(shards.length).toBeGreaterThan(1);
        expect(shards.length).toBeLessThanOrEqual(Math.ceil(2.5 / map.shardDuration));
        taken.push(...shards);
      }
      expect(taken, r.id).toEqual(map.shards.map((s) => s.index));
    }
  });

  it('an init segment is read from one shard: the first of the first segment that uses it', () => {
    expect(shardsOf(plan, { contentId: 'c', rendition: '180p', kind: 'init', n: 0 }).shards).toEqual([0]);
    expect(shardsOf(plan, { contentId: 'c', rendition: 'audio', kind: 'init', n: 0 }).shards).toEqual([0]);
  });

  it('names what is not there', () => {
    const last = plan.renditions[0]!.segments.length;
    expect(() => shardsOf(plan, { contentId: 'c', rendition: '360p', kind: 'media', n: last })).toThrow(/no media segment/);
    expect(() => shardsOf(plan, { contentId: 'c', rendition: '360p', kind: 'init', n: 1 })).toThrow(/no init segment 1/);
    expect(() => shardsOf(plan, { contentId: 'c', rendition: '1080p', kind: 'media', n: 0 })).toThrow(/no rendition 1080p/);
  });
});

describe('the fragment loader', () => {
  /** hls.js's own loader, as far as the plug-in sees it: it answers `http:` requests with 100 bytes. */
  class HttpLoader implements Loader<LoaderContext> {
    static loaded: string[] = [];
    context: LoaderContext | null = null;
    stats = freshStats();
    load(context: LoaderContext, _c: unknown, callbacks: LoaderCallbacks<LoaderContext>) {
      HttpLoader.loaded.push(context.url);
      this.stats.loaded = 100;
      callbacks.onSuccess({ url: context.url, data: new ArrayBuffer(100) }, this.stats, context, null);
    }
    abort() {}
    destroy() {}
  }
  const config = { loader: HttpLoader } as unknown as HlsConfig;
  const ctx = (url: string) => ({ url, responseType: 'arraybuffer', type: 'media-fragment' }) as unknown as FragmentLoaderContext;

  function source(answer: (url: string) => Promise<Uint8Array>): SegmentSource & { http: number } {
    return {
      http: 0,
      owns: (u) => u.startsWith('p2p:'),
      load: answer,
      countHttp(b) {
        this.http += b;
      },
    };
  }
  function callbacks() {
    const got: { ok?: ArrayBuffer; error?: string; aborted?: boolean; stats?: LoaderStats } = {};
    const cb = {
      onSuccess: (r: { data?: unknown }, s: LoaderStats) => {
        got.ok = r.data as ArrayBuffer;
        got.stats = s;
      },
      onError: (e: { text: string }) => (got.error = e.text),
      onTimeout: () => (got.error = 'timeout'),
      onAbort: () => (got.aborted = true),
    } as unknown as LoaderCallbacks<FragmentLoaderContext>;
    return { got, cb };
  }

  it("hands its own segments' exact bytes to hls.js with load stats, and counts what hls.js's loader fetched", async () => {
    const bytes = new Uint8Array(1000).map((_, i) => i % 251);
    const src = source(async () => bytes.subarray(10, 410));
    const Loader = fragmentLoaderFor(src);
    const own = callbacks();
    new Loader(config).load(ctx('p2p:seg'), {} as never, own.cb);
    await new Promise((r) => setTimeout(r, 0));
    expect(new Uint8Array(own.got.ok!)).toEqual(bytes.subarray(10, 410));
    expect(own.got.stats?.loaded).toBe(400);
    expect(own.got.stats?.loading.end).toBeGreaterThanOrEqual(own.got.stats!.loading.start);
    expect(HttpLoader.loaded).toEqual([]);

    const other = callbacks();
    new Loader(config).load(ctx('http:playlist'), {} as never, other.cb);
    expect(HttpLoader.loaded).toEqual(['http:playlist']);
    expect(other.got.ok?.byteLength).toBe(100);
    expect(src.http).toBe(100);
  });

  it('reports a failed segment as an error hls.js can retry, and drops an answer that comes after abort', async () => {
    let resolve!: (b: Uint8Array) => void;
    const Loader = fragmentLoaderFor(source((u) => (u === 'p2p:bad' ? Promise.reject(new Error('no source had shard 3')) : new Promise((r) => (resolve = r)))));
    const bad = callbacks();
    new Loader(config).load(ctx('p2p:bad'), {} as never, bad.cb);
    await new Promise((r) => setTimeout(r, 0));
    expect(bad.got.error).toMatch(/shard 3/);

    const late = callbacks();
    const loader = new Loader(config);
    loader.load(ctx('p2p:slow'), {} as never, late.cb);
    loader.abort();
    resolve(new Uint8Array(5));
    await new Promise((r) => setTimeout(r, 0));
    expect(late.got).toMatchObject({ aborted: true });
    expect(late.got.ok).toBeUndefined();
  });
});
