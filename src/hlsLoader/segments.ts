/**
 * The segment → shards mapping of the loader plug-in: which shardcast
 * segment a URL names, which shards it is made of, and its bytes from those
 * shards. The segmentation itself is the HLS output's own (src/shared/hls:
 * the plan and the assembler the server uses), so a segment built here from
 * peers' shards is the segment the server's playlist describes.
 */
import { API_PATHS, matchPath } from '../shared/api.ts';
import { type HlsPlan, type HlsRenditionPlan, initSource } from '../shared/hls/plan.ts';
import { buildInitSegment, buildMediaSegment } from '../shared/hls/segment.ts';
import type { ShardMap } from '../shared/shardMap.ts';

/** One segment URL, parsed: init segment `n` or media segment `n` (its media sequence number) of a rendition. */
export interface SegmentRef {
  contentId: string;
  rendition: string;
  kind: 'init' | 'media';
  n: number;
}

/** Largest segment number taken from a URL: far beyond any content (a 0.2 s shard per segment for 10 years), and a safe integer. */
const MAX_SEGMENT = 2 ** 31;

/**
 * The segment `url` names when it is an init or media segment URL of the
 * shardcast server at origin `server` (apiUrl.hlsInit / apiUrl.hlsSegment);
 * undefined for anything else (another origin, a playlist, a malformed number).
 */
export function parseSegmentUrl(url: string, server: string): SegmentRef | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.origin !== server) return undefined;
  for (const [kind, pattern] of [
    ['init', API_PATHS.hlsInit],
    ['media', API_PATHS.hlsSegment],
  ] as const) {
    const p = matchPath(pattern, u.pathname);
    if (!p) continue;
    if (!/^\d{1,10}$/.test(p.n ?? '') || Number(p.n) > MAX_SEGMENT || !p.id || !p.rendition) return undefined;
    return { contentId: p.id, rendition: p.rendition, kind, n: Number(p.n) };
  }
  return undefined;
}

/**
 * The rendition plan of `ref` and the map indices of the shards its bytes
 * are made from, in order: a media segment's shards, or for an init segment
 * the one shard that describes it.
 * @throws Error when the plan has no such rendition or segment.
 */
export function shardsOf(plan: HlsPlan, ref: SegmentRef): { rendition: HlsRenditionPlan; shards: number[] } {
  const rendition = plan.renditions.find((r) => r.id === ref.rendition);
  if (!rendition) throw new Error(`the content has no rendition ${ref.rendition} in its HLS output`);
  const seg = ref.kind === 'media' ? rendition.segments[ref.n] : initSource(rendition, ref.n);
  if (!seg) throw new Error(`rendition ${ref.rendition} has no ${ref.kind} segment ${ref.n}`);
  return { rendition, shards: ref.kind === 'media' ? seg.shards : seg.shards.slice(0, 1) };
}

/**
 * The bytes of segment `ref`, built by the HLS assembler from `shards`
 * (verified shard files by map index, as shardsOf named them).
 * @throws SegmentError (src/shared/hls/segment.ts) when a shard is missing or does not fit.
 */
export function buildSegment(map: ShardMap, plan: HlsPlan, ref: SegmentRef, shards: ReadonlyMap<number, Uint8Array>): Promise<Uint8Array> {
  const { rendition } = shardsOf(plan, ref);
  const get = async (r: string, index: number) => (r === rendition.id ? shards.get(index) : undefined);
  if (ref.kind === 'init') return buildInitSegment(map, rendition, ref.n, get);
  return buildMediaSegment(map, rendition, rendition.segments[ref.n]!, get);
}
