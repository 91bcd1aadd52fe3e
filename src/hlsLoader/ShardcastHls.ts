/**
 * The loader plug-in's session: one page's membership of the shardcast swarm
 * as an hls.js data source. Owns the pool connection, the peer links, one
 * ShardSources per content (holders, transfers, hash checks, cache fallback:
 * the viewer's own path, src/viewer/ShardSources.ts), the shard maps it has
 * loaded, and the delivery stats a page shows.
 *
 * hls.js asks for a segment URL; the session maps it to its shards
 * (./segments.ts), gets every shard verified against its accepted hash from
 * peers (then the server cache, when allowed), and builds the CMAF segment
 * from them. A segment no source can complete is an error hls.js handles by
 * its own policy (retry, or another rendition from its playlist).
 */
import type { FragmentLoaderConstructor, HlsConfig } from 'hls.js';
import { PeerManager } from '../net/PeerManager.ts';
import { PoolClient, readInit } from '../net/PoolClient.ts';
import { apiUrl } from '../shared/api.ts';
import { TypedEmitter } from '../shared/events.ts';
import { parseShardMap, type ShardMap } from '../shared/shardMap.ts';
import { VIEWER_CONFIG, type ViewerConfig } from '../viewer/config.ts';
import { type Fetched, ShardSources } from '../viewer/ShardSources.ts';
import { fragmentLoaderFor, type SegmentSource } from './FragmentLoader.ts';
import { type HlsPlan, planHls } from '../shared/hls/plan.ts';
import { buildSegment, parseSegmentUrl, type SegmentRef, shardsOf } from './segments.ts';

export interface ShardcastHlsOptions {
  /** Origin of the shardcast server, e.g. "https://video.example.org"; default: this page's origin. */
  server?: string;
  /** The pool's join token (or the viewer token of private content): sent with the pool's hello and the plug-in's own content reads. */
  token?: string;
  /**
   * Viewer tunables (src/viewer/config.ts, same names and defaults as the
   * watch page's query parameters), e.g. `{ cache: false }` for peers only.
   */
  viewer?: Partial<ViewerConfig>;
}

/** Delivery counters since the session started. Bytes are shard bytes as received; counts are shard files. */
export interface ShardcastHlsStats {
  /** Segments (init and media) handed to hls.js, each built only from shards that matched their accepted hash. */
  segments: number;
  /** Shards used, each verified against its accepted SHA-256 before use. */
  shardsVerified: number;
  shardsFromPeers: number;
  shardsFromCache: number;
  bytesFromPeers: number;
  bytesFromCache: number;
  /** Bytes hls.js's own loader fetched over HTTP through this plug-in's fragment loader (segments that are not shardcast's). */
  bytesFromHttp: number;
  /** Shards whose bytes did not match their hash (from a peer, which is reported to the pool, or the cache); never used. */
  hashFailures: number;
  /** Segments no source could complete, answered to hls.js as a load error. */
  segmentsFailed: number;
  /** Open peer links now. */
  peers: number;
}

/** Where one segment's shards came from. */
export interface SegmentReport {
  url: string;
  rendition: string;
  kind: 'init' | 'media';
  /** Per shard: its index and source (a peer id, or 'cache'). */
  shards: { index: number; source: string }[];
}

export interface ShardcastHlsEvents {
  /** A segment was built and handed over. */
  segment: SegmentReport;
  /** The stats changed. */
  stats: ShardcastHlsStats;
}

interface Swarm {
  map: ShardMap;
  plan: HlsPlan;
  sources: ShardSources;
}

export class ShardcastHls extends TypedEmitter<ShardcastHlsEvents> implements SegmentSource {
  readonly stats: ShardcastHlsStats = {
    segments: 0,
    shardsVerified: 0,
    shardsFromPeers: 0,
    shardsFromCache: 0,
    bytesFromPeers: 0,
    bytesFromCache: 0,
    bytesFromHttp: 0,
    hashFailures: 0,
    segmentsFailed: 0,
    peers: 0,
  };
  readonly config: ViewerConfig;
  /** The server's origin, no trailing slash. */
  readonly server: string;
  private readonly pool: PoolClient;
  private readonly peers: PeerManager;
  private readonly swarms = new Map<string, Promise<Swarm>>();
  private readonly fLoader: FragmentLoaderConstructor;
  private readonly token: string | undefined;

  /** @throws Error when `server` is not an absolute http(s) URL or a viewer option has the wrong type. */
  constructor(opts: ShardcastHlsOptions = {}) {
    super();
    const server = new URL(opts.server ?? location.origin);
    if (server.protocol !== 'http:' && server.protocol !== 'https:') throw new Error(`server must be an http(s) URL, not ${opts.server}`);
    this.server = server.origin;
    this.token = opts.token;
    this.config = VIEWER_CONFIG.schema.parse(opts.viewer ?? {});
    this.pool = new PoolClient({ url: apiUrl.ws(server), hello: () => ({ role: 'viewer', ...(opts.token && { token: opts.token }) }) });
    this.peers = new PeerManager(this.pool, { maxPeers: this.config.maxPeers, connectTimeoutMs: this.config.connectTimeoutMs });
    this.pool.connect();
    this.fLoader = fragmentLoaderFor(this);
  }

  /** The master playlist of content `id` on this server (absolute URL), for `hls.loadSource`. */
  masterUrl(id: string): string {
    return this.server + apiUrl.hlsMaster(id);
  }

  /** hls.js config fields that route shardcast segments through this session: spread into `new Hls({...})`. */
  hlsConfig(): Pick<HlsConfig, 'fLoader'> {
    return { fLoader: this.fLoader };
  }

  /** Leaves the swarm: closes the peer links and the pool connection. Segments still loading fail. */
  destroy(): void {
    this.peers.closeAll();
    this.pool.close();
  }

  owns(url: string): boolean {
    return parseSegmentUrl(url, this.server) !== undefined;
  }

  countHttp(bytes: number): void {
    this.stats.bytesFromHttp += bytes;
    this.emit('stats', this.stats);
  }

  async load(url: string): Promise<Uint8Array> {
    const ref = parseSegmentUrl(url, this.server);
    if (!ref) throw new Error(`${url} is not a shardcast segment of ${this.server}`);
    try {
      const { map, plan, sources } = await this.swarm(ref.contentId);
      const { shards: indices } = shardsOf(plan, ref);
      await this.locate(sources, map, indices);
      const got = await this.fetchAll(sources, ref, indices);
      const bytes = await buildSegment(map, plan, ref, new Map(got.map((g, i) => [indices[i]!, g.bytes])));
      this.stats.segments++;
      this.emit('segment', { url, rendition: ref.rendition, kind: ref.kind, shards: got.map((g, i) => ({ index: indices[i]!, source: g.source })) });
      this.emit('stats', this.stats);
      return bytes;
    } catch (e) {
      this.stats.segmentsFailed++;
      this.emit('stats', this.stats);
      throw e;
    }
  }

  /** The content's map and shard sources, loaded once per content. */
  private swarm(contentId: string): Promise<Swarm> {
    let s = this.swarms.get(contentId);
    if (!s) {
      s = this.openSwarm(contentId);
      this.swarms.set(contentId, s);
      // A failed load is not remembered: the next segment tries again.
      s.catch(() => this.swarms.delete(contentId));
    }
    return s;
  }

  private async openSwarm(contentId: string): Promise<Swarm> {
    const res = await fetch(this.server + apiUrl.content(contentId), readInit(this.token));
    if (!res.ok) throw new Error(`the shard map of ${contentId}: ${res.status === 404 ? 'no such content' : `HTTP ${res.status}`}`);
    const map = parseShardMap(((await res.json()) as { shardMap: unknown }).shardMap);
    const sources = new ShardSources(contentId, map, this.config, this.pool, this.peers, this.server);
    sources.on('peers', ({ open }) => {
      this.stats.peers = open;
      this.emit('stats', this.stats);
    });
    sources.on('hash-failure', () => {
      this.stats.hashFailures++;
      this.emit('stats', this.stats);
    });
    return { map, plan: planHls(map), sources };
  }

  /**
   * Asks the pool who holds the segment's shards (and a look-ahead window
   * after them), waiting up to `connectTimeoutMs` for the pool connection.
   * Without an answer the fetch still runs: the cache, when allowed, needs none.
   */
  private async locate(sources: ShardSources, map: ShardMap, indices: number[]): Promise<void> {
    const first = indices[0] ?? 0;
    const count = indices.length + Math.ceil(this.config.lookAheadSeconds / map.shardDuration);
    const end = performance.now() + this.config.connectTimeoutMs;
    while (this.pool.state !== 'open' && performance.now() < end) await new Promise((r) => setTimeout(r, 50));
    await sources.locate(first, count).catch(() => {});
  }

  /** Every shard of the segment, at most `maxConcurrentFetches` at once; throws naming the shards no source had. */
  private async fetchAll(sources: ShardSources, ref: SegmentRef, indices: number[]): Promise<Fetched[]> {
    const out: (Fetched | undefined)[] = new Array(indices.length);
    const failures: string[][] = indices.map(() => []);
    let next = 0;
    const worker = async () => {
      while (next < indices.length) {
        const i = next++;
        out[i] = await sources.fetch(indices[i]!, [ref.rendition], failures[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.config.maxConcurrentFetches, indices.length) }, worker));
    const missing = indices.filter((_, i) => !out[i]);
    if (missing.length) {
      const why = missing.map((n) => `${n} (${failures[indices.indexOf(n)]!.join('; ') || 'no holder'})`).join(', ');
      throw new Error(`shards of ${ref.rendition} no source could provide: ${why}`);
    }
    for (const f of out as Fetched[]) {
      this.stats.shardsVerified++;
      if (f.source === 'cache') {
        this.stats.shardsFromCache++;
        this.stats.bytesFromCache += f.bytes.byteLength;
      } else {
        this.stats.shardsFromPeers++;
        this.stats.bytesFromPeers += f.bytes.byteLength;
      }
    }
    return out as Fetched[];
  }
}
