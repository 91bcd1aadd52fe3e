/**
 * HLS (and DASH) from the server's shard cache, for standard players:
 * GET /api/contents/:id/hls/master.m3u8, one media playlist per rendition,
 * and the CMAF init and media segments they name (src/shared/hls plans,
 * writes and assembles them; this file answers HTTP). A playlist lists only
 * the segments whose shards are all ready and cached, so every URI it names
 * can be fetched; a segment asked for before that gets 404 `not-cached`.
 * With the cache off (--cache-enabled false) it lists the segments whose
 * shards peers hold instead: only the hls.js loader plug-in (src/hlsLoader),
 * which builds them from those peers' shards, can play that.
 *
 * This file owns the bound on segment building: at most
 * `hlsMaxConcurrentBuilds` distinct segments are built at once (each in
 * memory, from about 2 s of shards); identical requests share one build.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { API_PATHS } from '../../src/shared/api.ts';
import { ShardcastError } from '../../src/shared/errors.ts';
import { dashManifest } from '../../src/shared/hls/dash.ts';
import { initSource, listedSegments, planHls, segmentReady, type HlsPlan, type HlsRenditionPlan, type HlsSegment } from '../../src/shared/hls/plan.ts';
import { masterPlaylist, mediaPlaylist } from '../../src/shared/hls/playlist.ts';
import { buildInitSegment, buildMediaSegment, SegmentError, shardCodecString } from '../../src/shared/hls/segment.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { variantKeyString } from '../../src/shared/variantKey.ts';
import type { EdgeContext } from '../context.ts';
import type { Router } from '../http.ts';
import type { ShardCache } from '../ShardCache.ts';
import { contentOr404 } from './contents.ts';

const M3U8 = 'application/vnd.apple.mpegurl';

/** The whole number in a path parameter; throws bad-index. */
function indexParam(p: Record<string, string>): number {
  const n = Number(p.n);
  if (!/^\d{1,9}$/.test(p.n ?? '')) throw new ShardcastError('bad-index', `"${p.n}" is not a segment number (a whole number from 0)`);
  return n;
}

function renditionOf(plan: HlsPlan, map: ShardMap, id: string): HlsRenditionPlan {
  const r = plan.renditions.find((x) => x.id === id);
  if (!r) {
    throw new ShardcastError('unknown-rendition', `content ${map.contentId} has no rendition "${id}"; it has: ${plan.renditions.map((x) => x.id).join(', ')}`);
  }
  return r;
}

/** The viewer token the request came with as `?token=`, to carry on the relative URIs a playlist names (a player drops the query when it resolves them). */
function tokenQuery(url: URL): string {
  const token = url.searchParams.get('token');
  return token === null ? '' : `?${new URLSearchParams({ token })}`;
}

function send(req: IncomingMessage, res: ServerResponse, type: string, body: string | Uint8Array, cacheControl: string): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  // CORS for players on other origins is the edge's (--cors-origins), as for every API answer.
  res.writeHead(200, { 'Content-Type': type, 'Content-Length': bytes.byteLength, 'Cache-Control': cacheControl });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

/** Bounded, shared segment builds (see the file comment). */
class Builds {
  private readonly running = new Map<string, Promise<Uint8Array>>();
  constructor(private readonly max: number) {}

  run(key: string, build: () => Promise<Uint8Array>): Promise<Uint8Array> {
    const same = this.running.get(key);
    if (same) return same;
    if (this.running.size >= this.max) {
      throw new ShardcastError('busy', `${this.running.size} HLS segments are being built; try again in a second (server option --hls-max-concurrent-builds)`, {
        retryAfterSeconds: 1,
      });
    }
    const job = build().finally(() => this.running.delete(key));
    this.running.set(key, job);
    return job;
  }
}

/** Contents whose codec strings are remembered; past it the memory starts over (they are cheap to read again). */
const CODEC_MEMORY = 1000;

/** RFC 6381 codec strings read from each rendition's first cached shard, remembered per content. */
class Codecs {
  private readonly known = new Map<string, Map<string, string>>();
  constructor(private readonly cache: ShardCache) {}

  async of(map: ShardMap, plan: HlsPlan): Promise<Record<string, string>> {
    let mine = this.known.get(map.contentId);
    if (!mine) {
      if (this.known.size >= CODEC_MEMORY) this.known.clear();
      mine = new Map();
      this.known.set(map.contentId, mine);
    }
    for (const r of plan.renditions) {
      if (mine.has(r.id)) continue;
      const s = map.shards.find((x) => x.renditions[r.id]?.status === 'ready' && this.cache.has({ contentId: map.contentId, rendition: r.id, index: x.index }));
      const bytes = s && (await this.cache.read({ contentId: map.contentId, rendition: r.id, index: s.index }));
      const codec = bytes && (await shardCodecString(bytes, r.kind));
      if (codec) mine.set(r.id, codec);
    }
    return Object.fromEntries(mine);
  }
}

export function hlsRoutes(router: Router, ctx: EdgeContext): void {
  const { cache, store } = ctx;
  const builds = new Builds(ctx.config.hlsMaxConcurrentBuilds);
  const codecs = new Codecs(cache);
  /** Plans by live map: a plan depends only on the map's immutable parts (see plan.ts), so it is made once per content. */
  const plans = new WeakMap<ShardMap, HlsPlan>();
  const planOf = (id: string) => {
    const map = contentOr404({ store }, id).map;
    let plan = plans.get(map);
    if (!plan) {
      plan = planHls(map);
      plans.set(map, plan);
    }
    return { map, plan };
  };
  /** A copy of the map whose shards in `seg` are private: the pool updates the live map while a segment is built. */
  const snapshot = (map: ShardMap, seg: HlsSegment): ShardMap => {
    const shards = map.shards.slice();
    for (const i of seg.shards) shards[i] = structuredClone(map.shards[i]!);
    return { ...map, shards };
  };
  const available = (map: ShardMap) => (rendition: string, index: number) => cache.has({ contentId: map.contentId, rendition, index });
  /** What a media playlist lists: cached shards, or with the cache off, shards some peer holds. */
  const listable = (map: ShardMap) =>
    ctx.config.cacheEnabled
      ? available(map)
      : (rendition: string, index: number) => (ctx.pool.holders.get(variantKeyString({ contentId: map.contentId, rendition, index }))?.size ?? 0) > 0;
  const getter = (map: ShardMap) => (rendition: string, index: number) => cache.read({ contentId: map.contentId, rendition, index });

  router
    .add('GET', API_PATHS.hlsMaster, async (req, res, p, url) => {
      const { map, plan } = planOf(p.id!);
      send(req, res, M3U8, masterPlaylist(map, plan, await codecs.of(map, plan), tokenQuery(url)), 'no-cache');
    })
    .add('GET', API_PATHS.hlsPlaylist, (req, res, p, url) => {
      const { map, plan } = planOf(p.id!);
      const r = renditionOf(plan, map, p.rendition!);
      const listed = listedSegments(map, r, listable(map));
      const ended = listed === r.segments.length;
      // A growing playlist must be re-read; a finished one never changes again.
      send(req, res, M3U8, mediaPlaylist(r, { listed, ended, query: tokenQuery(url) }), ended ? 'max-age=3600' : 'no-cache');
    })
    .add('GET', API_PATHS.hlsInit, async (req, res, p) => {
      const { map, plan } = planOf(p.id!);
      const r = renditionOf(plan, map, p.rendition!);
      const n = indexParam(p);
      const source = initSource(r, n);
      const snap = source ? snapshot(map, source) : map;
      const bytes = await builds.run(`${map.contentId}/${r.id}/init-${n}`, () => buildInitSegment(snap, r, n, getter(map)));
      send(req, res, 'video/mp4', bytes, 'no-cache');
    })
    .add('GET', API_PATHS.hlsSegment, async (req, res, p) => {
      const { map, plan } = planOf(p.id!);
      const r = renditionOf(plan, map, p.rendition!);
      const n = indexParam(p);
      const seg = r.segments[n];
      if (!seg) throw new SegmentError('unknown-segment', `rendition ${r.id} of ${map.contentId} has segments 0 to ${r.segments.length - 1}, not ${n}`);
      if (!segmentReady(map, r.id, seg, available(map))) {
        const missing = seg.shards.filter((i) => !segmentReady(map, r.id, { ...seg, shards: [i] }, available(map)));
        throw new SegmentError(
          'not-cached',
          `segment ${n} of ${map.contentId}/${r.id} is not complete yet: shard(s) ${missing.join(', ')} are not encoded and cached; ` +
            'the media playlist lists it once they are',
        );
      }
      const snap = snapshot(map, seg);
      const bytes = await builds.run(`${map.contentId}/${r.id}/${n}`, () => buildMediaSegment(snap, r, seg, getter(map)));
      // Not immutable: a shard re-encoded after a failed cross-check changes the segment's bytes.
      send(req, res, 'video/mp4', bytes, 'no-cache');
    })
    .add('GET', API_PATHS.dash, async (req, res, p, url) => {
      const { map, plan } = planOf(p.id!);
      send(req, res, 'application/dash+xml', dashManifest(map, plan, available(map), await codecs.of(map, plan), tokenQuery(url)), 'no-cache');
    });
}
