/**
 * Where a viewer's shards come from. Owns the holders index (who holds which
 * shard, refreshed by `locate` round trips to the pool), one ShardTransfer
 * per peer, and the fallback order within the renditions it is given: the
 * holders (connected peers first, then the others at random, to spread
 * load), then the server cache. Every byte returned matched its accepted
 * hash; a peer that sent bad bytes is reported to the pool.
 */
import type { PeerManager } from '../net/PeerManager.ts';
import { readInit, type PoolClient } from '../net/PoolClient.ts';
import { ShardTransfer, type FetchError } from '../net/ShardTransfer.ts';
import { apiUrl } from '../shared/api.ts';
import { TypedEmitter } from '../shared/events.ts';
import type { HolderEntry } from '../shared/protocol.ts';
import type { ShardMap } from '../shared/shardMap.ts';
import { sha256Hex } from '../shared/wire.ts';
import type { ViewerConfig } from './config.ts';

/** One verified shard file and where it came from. */
export interface Fetched {
  bytes: Uint8Array;
  rendition: string;
  /** A peer id, or 'cache'. */
  source: string;
  /** The transfer alone, without connecting (ms): what the ABR learns from. */
  transferMs: number;
}

export interface ShardSourcesEvents {
  /** Bytes whose hash did not match, from a peer (reported to the pool) or the cache. */
  'hash-failure': { source: string; rendition: string; index: number };
  /** Open peer links now. */
  peers: { open: number };
}

export class ShardSources extends TypedEmitter<ShardSourcesEvents> {
  private readonly holders = new Map<string, HolderEntry>();
  private readonly transfers = new Map<string, ShardTransfer>();
  /** Peers this tab caught sending bad bytes (and reported): tried last, as the pool lists them to us. */
  private readonly reported = new Set<string>();
  private locating = false;
  private lastLocate = 0;

  constructor(
    private readonly contentId: string,
    private readonly map: ShardMap,
    private readonly config: ViewerConfig,
    private readonly pool: PoolClient,
    private readonly peers: PeerManager,
    /** Origin of the shardcast server for cache fetches ('' = this page's own), e.g. "https://shardcast.example". */
    private readonly serverBase = '',
  ) {
    super();
    const count = () => this.emit('peers', { open: peers.links.filter((l) => l.open).length });
    peers.on('link', ({ link }) => {
      link.on('open', count);
      link.on('close', () => {
        this.transfers.delete(link.remoteId);
        count();
      });
    });
  }

  /** Whether any holder is known yet. */
  get knowsHolders(): boolean {
    return this.holders.size > 0;
  }

  /** Whether some peer is known to hold shard `index` of `rendition`. */
  held(rendition: string, index: number): boolean {
    return (this.holders.get(`${rendition}/${index}`)?.peers.length ?? 0) > 0;
  }

  /**
   * Refreshes the holders of the window from shard `from` when the last
   * refresh is older than `config.locateEveryMs` (ms) and none is under way.
   * A pool that is not connected yet is simply tried again next time.
   */
  maybeLocate(from: number, now: number): void {
    if (this.pool.state !== 'open' || this.locating || now - this.lastLocate <= this.config.locateEveryMs) return;
    this.locating = true;
    this.lastLocate = now;
    const count = Math.ceil(this.config.lookAheadSeconds / this.map.shardDuration) + 4;
    this.locate(from, count)
      .catch(() => {
        /* not connected yet; next tick */
      })
      .finally(() => (this.locating = false));
  }

  /**
   * Asks the pool who holds shards [from, from + count) and remembers the
   * answer. Rejects when the pool is not connected or does not answer.
   */
  async locate(from: number, count: number): Promise<void> {
    const entries = await this.pool.locate(this.contentId, from, count);
    for (const e of entries) this.holders.set(`${e.rendition}/${e.index}`, e);
  }

  /**
   * Shard `index` in the first of `renditions` a source has, trying peers
   * before the cache (when `config.cache`). Each failed try is appended to
   * `failures` for the timeline; undefined when no source had it.
   */
  async fetch(index: number, renditions: string[], failures: string[]): Promise<Fetched | undefined> {
    const got = await this.fromPeers(index, renditions, failures);
    return got ?? (this.config.cache ? await this.fromCache(index, renditions, failures) : undefined);
  }

  /** The transfer to `peerId`, connecting when there is no open link (throws when none opens in time). */
  async transferTo(peerId: string): Promise<ShardTransfer> {
    let t = this.transfers.get(peerId);
    if (t && !t.link.closed) return t;
    const link = await this.peers.connect(peerId);
    t = ShardTransfer.of(link);
    this.transfers.set(peerId, t);
    return t;
  }

  private async fromPeers(index: number, renditions: string[], failures: string[]): Promise<Fetched | undefined> {
    for (const rendition of renditions) {
      const h = this.holders.get(`${rendition}/${index}`);
      if (!h?.sha256) continue;
      // Spread load: connected peers first, then the others in random order; peers that sent us bad bytes last.
      const rank = (p: string) => (this.reported.has(p) ? 2 : 0) - Number(this.transfers.has(p));
      const peers = [...h.peers].sort(() => Math.random() - 0.5).sort((a, b) => rank(a) - rank(b));
      for (const peerId of peers) {
        try {
          const t = await this.transferTo(peerId);
          const t0 = performance.now();
          const { bytes } = await t.fetch({ contentId: this.contentId, rendition, index }, h.sha256, this.config.fetchTimeoutMs);
          return { bytes, rendition, source: peerId, transferMs: performance.now() - t0 };
        } catch (e) {
          const err = e as FetchError;
          failures.push(`${peerId.slice(0, 6)} ${rendition}: ${err.code ? `${err.code} (${err.message.slice(0, 100)})` : err.message}`);
          if (err.code === 'hash-mismatch') {
            this.emit('hash-failure', { source: peerId, rendition, index });
            this.reported.add(peerId);
            this.pool.send({ type: 'report-peer', peerId, key: { contentId: this.contentId, rendition, index }, reason: 'hash mismatch' });
          }
          if (err.code === 'absent') h.peers = h.peers.filter((p) => p !== peerId);
        }
      }
    }
    return undefined;
  }

  private async fromCache(index: number, renditions: string[], failures: string[]): Promise<Fetched | undefined> {
    for (const rendition of renditions) {
      // The latest locate answer first: a cross-check may have replaced the variant since the map was read.
      const sha = this.holders.get(`${rendition}/${index}`)?.sha256 ?? this.map.shards[index]!.renditions[rendition]?.sha256;
      if (!sha) continue;
      try {
        const t0 = performance.now();
        // Addressed by hash: a browser-cached copy of a replaced variant is never reused.
        const res = await fetch(this.serverBase + apiUrl.cachedShard({ contentId: this.contentId, rendition, index }, sha), readInit());
        if (!res.ok) {
          failures.push(`cache ${rendition}: ${res.status}`);
          continue;
        }
        const bytes = new Uint8Array(await res.arrayBuffer());
        if ((await sha256Hex(bytes)) !== sha) {
          this.emit('hash-failure', { source: 'cache', rendition, index });
          failures.push(`cache ${rendition}: hash mismatch`);
          continue;
        }
        return { bytes, rendition, source: 'cache', transferMs: performance.now() - t0 };
      } catch (e) {
        failures.push(`cache ${rendition}: ${(e as Error).message}`);
      }
    }
    return undefined;
  }
}
