/**
 * Owns the HTTP API contract between the server and its clients (the UI
 * pages, the encoder and viewer tabs, the CLI): every path, a URL builder for
 * each, and a zod schema (with its type) for every JSON response.
 *
 * The server registers its routes with API_PATHS and types its replies with
 * these types; clients build URLs with `apiUrl` instead of by hand, so a path
 * is spelled once. Binary responses (source slices, shards, export.mp4) are
 * described by their headers (SLICE_HEADERS, EXPORT_HEADERS).
 */
import { z } from 'zod';
import { ERROR_CODES } from './errors.ts';
import { shardMapSchema } from './shardMap.ts';

/** Route patterns (`:name` is one path segment), as the server's router takes them. */
export const API_PATHS = {
  health: '/api/health',
  contents: '/api/contents',
  content: '/api/contents/:id',
  source: '/api/contents/:id/source',
  mezzanineClaim: '/api/mezzanine/claim',
  mezzanineSource: '/api/mezzanine/:id/source',
  mezzanine: '/api/mezzanine/:id',
  shard: '/api/contents/:id/shards/:rendition/:index',
  export: '/api/contents/:id/export.mp4',
  hlsMaster: '/api/contents/:id/hls/master.m3u8',
  hlsPlaylist: '/api/contents/:id/hls/:rendition/playlist.m3u8',
  hlsInit: '/api/contents/:id/hls/:rendition/init-:n.mp4',
  hlsSegment: '/api/contents/:id/hls/:rendition/seg-:n.m4s',
  dash: '/api/contents/:id/dash/manifest.mpd',
  pool: '/api/pool',
  metrics: '/metrics',
  ws: '/ws',
} as const;

/** A parameter's name ends at the first character that is not a letter: `seg-:n.m4s` names `n`. */
type NameOf<K extends string> = K extends `${infer A}.${string}` ? A : K;
type ParamNames<P extends string> = P extends `${string}:${infer K}/${infer Rest}`
  ? NameOf<K> | ParamNames<Rest>
  : P extends `${string}:${infer K}`
    ? NameOf<K>
    : never;

/** Fills a pattern's `:name` segments, each URI-encoded. */
export function fillPath<P extends string>(pattern: P, params: Record<ParamNames<P>, string | number>): string {
  return pattern.replace(/:([a-zA-Z]+)/g, (_, k: string) => encodeURIComponent(String((params as Record<string, string | number>)[k])));
}

function withQuery(path: string, query: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** A route pattern as a RegExp with one group per `:name` (the name ends at the first non-letter), and the names in order. */
export function compilePath(pattern: string): { re: RegExp; keys: string[] } {
  const keys: string[] = [];
  const re = pattern
    .split(/(:[a-zA-Z]+)/)
    .map((part) => {
      if (!part.startsWith(':')) return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      keys.push(part.slice(1));
      return '([^/]+?)';
    })
    .join('');
  return { re: new RegExp(`^${re}$`), keys };
}

/** The `:name` values (URI-decoded) of `pathname` when it matches `pattern`; undefined when it does not, or is badly encoded. */
export function matchPath(pattern: string, pathname: string): Record<string, string> | undefined {
  const { re, keys } = compilePath(pattern);
  const m = re.exec(pathname);
  if (!m) return undefined;
  try {
    return Object.fromEntries(keys.map((k, i) => [k, decodeURIComponent(m[i + 1]!)]));
  } catch {
    return undefined;
  }
}

export type SliceTracks = 'video' | 'audio' | 'both';

/** Paths (origin-relative) of every endpoint; resolve against a base with `new URL(path, base)` where needed. */
export const apiUrl = {
  health: (): string => API_PATHS.health,
  contents: (): string => API_PATHS.contents,
  /** POST target of an upload; `renditions` is a ladder as JSON. */
  publish: (q: { shardDuration?: number | string | undefined; name?: string | undefined; renditions?: string | undefined } = {}): string =>
    withQuery(API_PATHS.contents, q),
  content: (id: string): string => fillPath(API_PATHS.content, { id }),
  mezzanineClaim: (): string => API_PATHS.mezzanineClaim,
  /** The whole source a mezzanine job transcodes; `job` is the claim's token. */
  mezzanineSource: (id: string, job: string): string => `${fillPath(API_PATHS.mezzanineSource, { id })}?job=${encodeURIComponent(job)}`,
  mezzanine: (id: string, job: string): string => `${fillPath(API_PATHS.mezzanine, { id })}?job=${encodeURIComponent(job)}`,
  /** A source slice: content seconds [start, end), as the pool writes them (6 decimals). */
  source: (id: string, q: { start: number; end: number; tracks: SliceTracks }): string =>
    withQuery(fillPath(API_PATHS.source, { id }), { start: q.start.toFixed(6), end: q.end.toFixed(6), tracks: q.tracks }),
  /** A shard in the server cache (GET) or an upload of one (PUT; audio adds lead/tail samples). */
  shard: (key: { contentId: string; rendition: string; index: number }, q: { lead?: number | undefined; tail?: number | undefined } = {}): string =>
    withQuery(fillPath(API_PATHS.shard, { id: key.contentId, rendition: key.rendition, index: key.index }), q),
  /**
   * A cached shard by content address: the accepted variant's sha256 is part of
   * the URL, so the answer is immutable (a replaced variant gets a new URL; the
   * old one answers 404 variant-replaced). The plain `shard` URL is revalidated
   * with its ETag instead.
   */
  cachedShard: (key: { contentId: string; rendition: string; index: number }, sha256: string): string =>
    withQuery(fillPath(API_PATHS.shard, { id: key.contentId, rendition: key.rendition, index: key.index }), { sha256 }),
  export: (id: string, rendition?: string): string => withQuery(fillPath(API_PATHS.export, { id }), { rendition }),
  /** HLS master playlist of a content (video renditions as variant streams, audio as an alternate group). */
  hlsMaster: (id: string): string => fillPath(API_PATHS.hlsMaster, { id }),
  /** HLS media playlist of one rendition. */
  hlsPlaylist: (id: string, rendition: string): string => fillPath(API_PATHS.hlsPlaylist, { id, rendition }),
  /** CMAF init segment `n` (from 0) of a rendition. */
  hlsInit: (id: string, rendition: string, n: number): string => fillPath(API_PATHS.hlsInit, { id, rendition, n }),
  /** CMAF media segment with media sequence number `n` (from 0) of a rendition. */
  hlsSegment: (id: string, rendition: string, n: number): string => fillPath(API_PATHS.hlsSegment, { id, rendition, n }),
  /** DASH manifest over the same segments. */
  dash: (id: string): string => fillPath(API_PATHS.dash, { id }),
  pool: (): string => API_PATHS.pool,
  metrics: (): string => API_PATHS.metrics,
  /** The pool WebSocket on the page's own origin. */
  ws: (loc: { protocol: string; host: string }): string => `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}${API_PATHS.ws}`,
};

/** The part of `path` after its last `/`. */
const lastPart = (path: string) => path.slice(path.lastIndexOf('/') + 1);

/**
 * The HLS URIs as playlists write them: relative to the playlist that names
 * them (a media playlist from the master, segments from their media
 * playlist), so the output also works behind a proxy that mounts the API
 * under another prefix. Same paths as apiUrl's builders.
 */
export const hlsRelative = {
  playlist: (rendition: string): string => `${encodeURIComponent(rendition)}/${lastPart(apiUrl.hlsPlaylist('-', rendition))}`,
  init: (n: number): string => lastPart(apiUrl.hlsInit('-', '-', n)),
  segment: (n: number): string => lastPart(apiUrl.hlsSegment('-', '-', n)),
  /** From the DASH manifest to a rendition's HLS directory. */
  dashToRendition: (rendition: string): string => `../hls/${encodeURIComponent(rendition)}/`,
};

/** Response headers of a source slice: content seconds its t = 0 and its media end are at. */
export const SLICE_HEADERS = { start: 'X-Slice-Start', end: 'X-Slice-End' } as const;

/** Response headers of export.mp4: what went into the file. */
export const EXPORT_HEADERS = {
  rendition: 'X-Export-Rendition',
  videoShards: 'X-Export-Video-Shards',
  held: 'X-Export-Held',
  audioShards: 'X-Export-Audio-Shards',
  silent: 'X-Export-Silent',
} as const;

// ------------------------------------------------------------------ responses

/** Every error answer: `{"error":{"code","message"}}` with a status from signaling/errorStatus.ts. */
export const errorResponseSchema = z.object({ error: z.object({ code: z.enum(ERROR_CODES), message: z.string() }) });

export const healthResponseSchema = z.object({ ok: z.literal(true), contents: z.number().int(), peers: z.number().int() });

/** `normalizing`: waiting for volunteers' mezzanine (a track only ffmpeg.wasm decodes; README "Accepted files"). */
export const contentStatusSchema = z.enum(['normalizing', 'encoding', 'ready', 'failed']);

/** One content in GET /api/contents. */
export const contentSummarySchema = z.object({
  id: z.string(),
  name: z.string(),
  status: contentStatusSchema,
  /** Seconds. */
  duration: z.number(),
  shards: z.number().int(),
  renditions: z.array(z.string()),
  /** Shard variants (shard x rendition) encoded, of `total`. */
  ready: z.number().int(),
  total: z.number().int(),
  /** ISO 8601. */
  createdAt: z.string(),
  /** Why a `normalizing` content waits. */
  reason: z.string().optional(),
});

export const contentsResponseSchema = z.object({ contents: z.array(contentSummarySchema) });

/** GET /api/contents/:id. */
export const contentResponseSchema = z.object({
  id: z.string(),
  name: z.string(),
  status: contentStatusSchema,
  createdAt: z.string(),
  shardMap: shardMapSchema,
});

/** POST /api/contents (201). */
/** 201 with the map's size; 202 with `status: normalizing` and its `reason` when the source waits for a mezzanine. */
export const publishResponseSchema = z.object({
  id: z.string(),
  shards: z.number().int(),
  renditions: z.array(z.string()),
  status: z.literal('normalizing').optional(),
  reason: z.string().optional(),
});

/** DELETE /api/contents/:id. */
export const deleteResponseSchema = z.object({ deleted: z.string() });

/** PUT of a shard: with an upload token, the intake's check (200); without, a copy taken into the cache (201). */
export const shardPutResponseSchema = z.union([
  z.object({ checked: z.string(), sha256: z.string(), size: z.number().int() }),
  z.object({ cached: z.string() }),
]);

// GET /api/pool: the pool's snapshot (PoolManager.snapshot()).

export const jobClassSchema = z.enum(['live', 'start', 'background']);

export const encoderHealthSchema = z.object({
  score: z.number(),
  /** Seconds of content encoded per second of wall time. */
  speed: z.number(),
  ok: z.number(),
  failed: z.number(),
  timedOut: z.number(),
  invalid: z.number(),
  /** Epoch ms; 0 unless quarantined now. */
  quarantinedUntil: z.number(),
  quarantineReason: z.string().optional(),
  /** Cross-checks (signaling/policy/Trust.ts): chance its next job is checked, checks passed and failed, accepted shards not yet verified. */
  trust: z.object({ checkRate: z.number(), passed: z.number(), failed: z.number(), unverified: z.number() }).optional(),
});

export const peerViewSchema = z.object({
  id: z.string(),
  role: z.enum(['encoder', 'viewer']),
  /** Epoch ms. */
  joinedAt: z.number(),
  lastSeen: z.number(),
  jobs: z.array(z.string()),
  holdings: z.number(),
  completedJobs: z.number(),
  failedJobs: z.number(),
  shardsEncoded: z.number(),
  engines: z.array(z.object({ name: z.string(), codecs: z.array(z.string()).optional(), speed: z.number().optional() })),
  /** Transfers being served now. */
  serving: z.number().optional(),
  heldBytes: z.number().optional(),
  health: encoderHealthSchema.optional(),
});

export const jobViewSchema = z.object({
  id: z.string(),
  peerId: z.string(),
  contentId: z.string(),
  rendition: z.string(),
  shards: z.array(z.number()),
  done: z.number(),
  /** 0..1. */
  progress: z.number(),
  /** Epoch ms. */
  deadline: z.number().optional(),
  klass: jobClassSchema.optional(),
  /** Cross-check jobs: which stage. */
  check: z.string().optional(),
});

export const renditionHeatSchema = z.object({
  id: z.string(),
  /** One character per shard: r ready, e encoding, p pending, f failed, '-' no such variant. */
  status: z.string(),
  /** Live holders per shard. */
  holders: z.array(z.number()),
  /** '1' where the server cache has the shard, per shard. */
  cached: z.string(),
});

export const contentHeatSchema = z.object({
  id: z.string(),
  name: z.string(),
  shards: z.number(),
  renditions: z.array(renditionHeatSchema),
  /** Requests per second, per shard. */
  demand: z.array(z.number()),
});

export const poolEventSchema = z.object({ at: z.number(), type: z.string(), detail: z.unknown() });

export const poolSnapshotSchema = z.object({
  peers: z.array(peerViewSchema),
  viewers: z.array(z.object({ contentId: z.string(), index: z.number() })).optional(),
  jobs: z.array(jobViewSchema),
  contents: z.array(contentHeatSchema).optional(),
  /** Sources waiting for volunteers' mezzanine, with why (README "Accepted files"). */
  normalizing: z.array(z.object({ id: z.string(), name: z.string(), reason: z.string() })).optional(),
  counters: z.record(z.string(), z.number()),
  trust: z.record(z.string(), z.number()).optional(),
  events: z.array(poolEventSchema),
});

export type ErrorResponse = z.infer<typeof errorResponseSchema>;
export type HealthResponse = z.infer<typeof healthResponseSchema>;
export type ContentSummaryView = z.infer<typeof contentSummarySchema>;
export type ContentsResponse = z.infer<typeof contentsResponseSchema>;
export type ContentResponse = z.infer<typeof contentResponseSchema>;
export type PublishResponse = z.infer<typeof publishResponseSchema>;
export type DeleteResponse = z.infer<typeof deleteResponseSchema>;
export type ShardPutResponse = z.infer<typeof shardPutResponseSchema>;
export type JobClass = z.infer<typeof jobClassSchema>;
export type EncoderHealth = z.infer<typeof encoderHealthSchema>;
export type PeerView = z.infer<typeof peerViewSchema>;
export type JobView = z.infer<typeof jobViewSchema>;
export type RenditionHeat = z.infer<typeof renditionHeatSchema>;
export type ContentHeat = z.infer<typeof contentHeatSchema>;
export type PoolEvent = z.infer<typeof poolEventSchema>;
export type PoolSnapshot = z.infer<typeof poolSnapshotSchema>;
