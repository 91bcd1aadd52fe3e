/**
 * Demand: how often each shard is asked for (a decaying rate), where viewers'
 * playheads are, and how many views each content has had lately. The pool
 * uses it to order work (shards near a playhead first), to replicate hot
 * shards, and to predict what to pre-encode while encoders are idle.
 *
 * Rates decay exponentially with a half-life: rate(t) = rate(t0)·2^-(t-t0)/h,
 * and each request adds 1/h·ln2, so a steady r requests/s reads as r.
 */
export interface DemandConfig {
  demandHalfLifeMs: number;
  viewerActiveMs: number;
}

interface Decaying {
  value: number;
  at: number;
}

export interface Playhead {
  contentId: string;
  index: number;
  at: number;
}

export class Demand {
  private readonly shardRates = new Map<string, Decaying>();
  private readonly views = new Map<string, Decaying>();
  readonly playheads = new Map<string, Playhead>();
  /** Requests counted, for /metrics. */
  requests = 0;

  constructor(
    private readonly config: DemandConfig,
    private readonly now: () => number,
  ) {}

  private decayed(d: Decaying | undefined, now: number): number {
    if (!d) return 0;
    return d.value * Math.pow(2, -(now - d.at) / this.config.demandHalfLifeMs);
  }

  private bump(map: Map<string, Decaying>, key: string, amount: number): void {
    const now = this.now();
    map.set(key, { value: this.decayed(map.get(key), now) + amount, at: now });
  }

  /** A viewer asked who holds shards [from, from + count) of a content: its playhead is at `from`. */
  locate(viewerId: string, contentId: string, from: number, count: number): void {
    const prev = this.playheads.get(viewerId);
    if (!prev || prev.contentId !== contentId) this.bump(this.views, contentId, (Math.LN2 * 1000) / this.config.demandHalfLifeMs);
    this.playheads.set(viewerId, { contentId, index: from, at: this.now() });
    // A locate covers the viewer's look-ahead; each shard in it is one request's worth of demand.
    const per = (Math.LN2 * 1000) / this.config.demandHalfLifeMs;
    for (let i = from; i < from + count; i++) this.bump(this.shardRates, `${contentId}/${i}`, per);
    this.requests += count;
  }

  leave(viewerId: string): void {
    this.playheads.delete(viewerId);
  }

  /** Requests per second for a shard (any rendition). */
  rate(contentId: string, index: number): number {
    return this.decayed(this.shardRates.get(`${contentId}/${index}`), this.now());
  }

  /** Recent views of a content per second (decaying). */
  viewRate(contentId: string): number {
    return this.decayed(this.views.get(contentId), this.now());
  }

  /** Playheads of viewers active lately. */
  active(): Playhead[] {
    const cutoff = this.now() - this.config.viewerActiveMs;
    return [...this.playheads.values()].filter((p) => p.at >= cutoff);
  }

  /** Shard keys with a rate worth tracking, for the replication pass. */
  *hot(minRate: number): Generator<{ contentId: string; index: number; rate: number }> {
    const now = this.now();
    for (const [key, d] of this.shardRates) {
      const rate = this.decayed(d, now);
      if (rate < 0.01) {
        this.shardRates.delete(key);
        continue;
      }
      if (rate < minRate) continue;
      const slash = key.lastIndexOf('/');
      yield { contentId: key.slice(0, slash), index: Number(key.slice(slash + 1)), rate };
    }
  }

  /**
   * Predicted demand for a shard position of a content: its recent views,
   * weighted up towards the start (most views begin there, many end early).
   */
  predicted(contentId: string, start: number): number {
    return (0.05 + this.viewRate(contentId)) * (1 + 3 * Math.exp(-start / 10));
  }
}
