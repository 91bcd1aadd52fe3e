/**
 * Owns replication: the replicate orders outstanding, the encoders backed
 * off from orders, the replicas (copies made by replication, releasable) and
 * how long each hot shard has been cool. Its policy: hot shards (or shards
 * whose holders are all busy) get copies up to their want; an orphaned shard
 * is copied from the cache when the cache has it; replicas of shards cool for
 * long enough are released, never the last copy.
 */
import type { ClientMessage } from '../../src/shared/protocol.ts';
import { parseVariantKey, variantKeyString, type VariantKey } from '../../src/shared/variantKey.ts';
import type { ServerConfig } from '../config.ts';
import type { ContentStore } from '../ContentStore.ts';
import type { Demand } from '../policy/Demand.ts';
import type { Health } from '../policy/Health.ts';
import type { AvailabilityIndex } from './AvailabilityIndex.ts';
import type { Sessions } from './Sessions.ts';
import { ProtocolError, type Outbox, type Peer } from './types.ts';

/** Replication's options (see signaling/config.ts for each one's meaning and unit). */
export type ReplicationConfig = Pick<
  ServerConfig,
  'replicateAboveRate' | 'perReplicaRate' | 'maxReplicas' | 'busyServing' | 'releaseBelowRate' | 'releaseAfterMs' | 'replicateTimeoutMs'
>;

export class Replication {
  /** variant key -> peer -> when a `replicate` was sent and not yet answered (ms). */
  private readonly replicating = new Map<string, Map<string, number>>();
  /** peer -> until when (ms) it is not asked to replicate (it let an order time out, or failed one). */
  private readonly backoff = new Map<string, number>();
  /** variant key -> peers holding a copy made by replication (releasable). */
  readonly replicas = new Map<string, Set<string>>();
  /** variant key -> since when (ms) its demand has been below the release rate. */
  private readonly coolSince = new Map<string, number>();
  /** Replicate orders sent to each encoder since the last pass (see replicateTo). */
  private readonly ordersThisPass = new Map<string, number>();

  constructor(
    private readonly store: ContentStore,
    private readonly index: AvailabilityIndex,
    private readonly sessions: Sessions,
    private readonly health: Health,
    private readonly demand: Demand,
    private readonly isCached: (k: VariantKey) => boolean,
    private readonly outbox: Outbox,
    private readonly config: ReplicationConfig,
    private readonly now: () => number,
    /** Coalesced scheduling (an orphan to encode again). */
    private readonly scheduleSoon: () => void,
  ) {}

  /**
   * A shard variant's last holder is gone. With a cached copy, an encoder
   * with free room (other than `droppedBy`, which just evicted it) is asked to
   * take it from the cache; none may have room, and then the cache alone
   * serves it. Otherwise it is encoded again. Copying into a full store would
   * evict another last copy, orphan that one, and so on for ever.
   */
  orphaned(key: string, droppedBy?: string): void {
    const k = parseVariantKey(key);
    const st = k && this.store.get(k.contentId)?.map.shards[k.index]?.renditions[k.rendition];
    if (!k || !st || st.status !== 'ready') return;
    if (this.isCached(k)) {
      this.outbox.emit('shard-orphaned', { key, action: 'from-cache' });
      this.replicateTo(key, st.sha256!, st.size ?? 1, 1, 'last holder left; copy from the cache', { ...(droppedBy && { exclude: droppedBy }), needRoom: true });
    } else {
      this.outbox.emit('shard-orphaned', { key, action: 're-encode' });
      this.index.markOrphaned(key);
      // One leave can orphan hundreds of shards: schedule once, after it.
      this.scheduleSoon();
    }
  }

  /** Orphans every accepted shard that neither a connected encoder nor the cache holds: it is encoded again. */
  orphanUnheld(): void {
    for (const c of this.store.all())
      for (const sh of c.map.shards)
        for (const [rendition, st] of Object.entries(sh.renditions)) {
          if (st.status !== 'ready') continue;
          const k = { contentId: c.meta.id, rendition, index: sh.index };
          const key = variantKeyString(k);
          if (this.index.holdersOf(key).size === 0 && !this.isCached(k)) this.orphaned(key);
        }
  }

  /**
   * Sends up to `n` `replicate` orders for a key to the least-loaded able
   * encoders: not `exclude`, and with `needRoom`, only those whose store (as
   * last reported: capabilities and heartbeats) takes `size` bytes without
   * evicting. Returns how many were sent.
   */
  replicateTo(key: string, sha256: string, size: number, n: number, reason: string, opts: { exclude?: string; needRoom?: boolean } = {}): number {
    const k = parseVariantKey(key)!;
    const holders = [...this.index.holdersOf(key)].filter((p) => !this.health.isQuarantined(p));
    const cached = this.isCached(k);
    if (holders.length === 0 && !cached) return 0;
    let pending = this.replicating.get(key);
    if (!pending) this.replicating.set(key, (pending = new Map()));
    // Orders given since the last pass count as load. Every order is answered by one message
    // (shard-stored or replicate-failed) that counts against the encoder's own message rate limit,
    // and load read from heartbeats does not move within a pass: one pass over many hot shards, or
    // one leave orphaning hundreds, sent every order to the same least-loaded tab (426 in one second
    // in the churn simulation), whose answers then got it closed for flooding (1008) with all it held.
    const given = (id: string) => this.ordersThisPass.get(id) ?? 0;
    const now = this.now();
    const targets = [...this.sessions.peers.values()]
      .filter(
        (p) =>
          p.role === 'encoder' &&
          p.id !== opts.exclude &&
          !p.holdings.has(key) &&
          !pending.has(p.id) &&
          !this.health.isQuarantined(p.id) &&
          (this.backoff.get(p.id) ?? 0) <= now,
      )
      .filter((p) => !opts.needRoom || p.capabilities?.storageBytes === undefined || p.heldBytes + size <= p.capabilities.storageBytes)
      .sort((a, b) => a.serving + a.jobs.size + given(a.id) - (b.serving + b.jobs.size + given(b.id)) || a.holdings.size - b.holdings.size)
      .slice(0, n);
    for (const t of targets) {
      this.ordersThisPass.set(t.id, given(t.id) + 1);
      pending.set(t.id, now);
      this.outbox.send(t.id, { type: 'replicate', key: k, sha256, size, from: holders.slice(0, 16), cached });
      this.outbox.emit('replicate', { key, peerId: t.id, from: holders.length, cached, reason });
    }
    return targets.length;
  }

  /** An encoder stored a copy it was asked for. Throws ProtocolError when it was not asked or the hash is not the accepted one. */
  stored(peer: Peer, msg: Extract<ClientMessage, { type: 'shard-stored' }>, addHolder: (peerId: string, key: string) => void): void {
    const key = variantKeyString(msg.key);
    const asked = this.replicating.get(key)?.delete(peer.id);
    const st = this.store.get(msg.key.contentId)?.map.shards[msg.key.index]?.renditions[msg.key.rendition];
    if (!asked) throw new ProtocolError('not-asked', `no replication of ${key} was asked of you`);
    if (st?.status !== 'ready' || st.sha256 !== msg.sha256)
      throw new ProtocolError('hash-mismatch', `${key}: the stored copy does not match the accepted hash`);
    addHolder(peer.id, key);
    let set = this.replicas.get(key);
    if (!set) this.replicas.set(key, (set = new Set()));
    set.add(peer.id);
    this.outbox.emit('replica-stored', { key, peerId: peer.id });
  }

  /** An encoder could not carry out an order: it is not asked again for a while. */
  failed(peerId: string, key: VariantKey): void {
    this.replicating.get(variantKeyString(key))?.delete(peerId);
    this.backoff.set(peerId, this.now() + this.config.replicateTimeoutMs);
  }

  forgetReplica(peerId: string, key: string): void {
    this.replicas.get(key)?.delete(peerId);
  }

  peerLeft(peerId: string): void {
    for (const pending of this.replicating.values()) pending.delete(peerId);
    this.backoff.delete(peerId);
  }

  /** A new pass begins: orders given in the last one stop counting as load. */
  beginPass(): void {
    this.ordersThisPass.clear();
  }

  /**
   * The periodic pass: stale orders are forgotten, hot shards (or shards whose
   * holders are busy) get replicas up to their want, and replicas of shards
   * cool for long enough are released.
   */
  pass(): void {
    const now = this.now();
    this.expireOrders(now);
    this.replicateHot(now);
    this.releaseCool(now);
  }

  private expireOrders(now: number): void {
    for (const [key, pending] of this.replicating) {
      for (const [peerId, at] of pending) {
        if (now - at <= this.config.replicateTimeoutMs) continue;
        // An encoder that lets orders lapse is not asked again for a while (it may be overloaded or broken).
        pending.delete(peerId);
        this.backoff.set(peerId, now + 4 * this.config.replicateTimeoutMs);
      }
      if (pending.size === 0) this.replicating.delete(key);
    }
  }

  private replicateHot(now: number): void {
    const busy = (id: string) => (this.sessions.get(id)?.serving ?? 0) >= this.config.busyServing;
    // Every shard with any demand: a cool shard still wants a copy when all its holders are busy.
    for (const { contentId, index, rate } of this.demand.hot(0.01)) {
      const shard = this.store.get(contentId)?.map.shards[index];
      if (!shard) continue;
      for (const [rendition, st] of Object.entries(shard.renditions)) {
        if (st.status !== 'ready' || !st.sha256) continue;
        const key = variantKeyString({ contentId, rendition, index });
        const holders = [...this.index.holdersOf(key)];
        let want = rate >= this.config.replicateAboveRate ? Math.ceil(rate / this.config.perReplicaRate) : 1;
        if (holders.length > 0 && holders.every(busy)) want = Math.max(want, holders.length + 1);
        want = Math.min(want, this.config.maxReplicas);
        const have = holders.length + (this.replicating.get(key)?.size ?? 0);
        if (want > have && holders.length > 0) this.replicateTo(key, st.sha256, st.size ?? 1, want - have, `demand ${rate.toFixed(1)} req/s`);
        if (rate < this.config.releaseBelowRate) {
          if (!this.coolSince.has(key)) this.coolSince.set(key, now);
        } else this.coolSince.delete(key);
      }
    }
  }

  /** Releases replicas of shards that stayed cool, never the last copy. */
  private releaseCool(now: number): void {
    for (const [key, set] of this.replicas) {
      const k = parseVariantKey(key);
      const rate = k ? this.demand.rate(k.contentId, k.index) : 0;
      if (rate >= this.config.releaseBelowRate) {
        this.coolSince.delete(key);
        continue;
      }
      const since = this.coolSince.get(key) ?? now;
      this.coolSince.set(key, since);
      if (now - since < this.config.releaseAfterMs) continue;
      for (const peerId of [...set]) {
        if (this.index.holdersOf(key).size <= 1) break;
        set.delete(peerId);
        if (this.index.remove(peerId, key)) this.orphaned(key);
        this.outbox.send(peerId, { type: 'release', key: k!, reason: 'demand has cooled' });
        this.outbox.emit('replica-released', { key, peerId });
      }
      if (set.size === 0) {
        this.replicas.delete(key);
        this.coolSince.delete(key);
      }
    }
  }
}
