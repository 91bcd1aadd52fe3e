/**
 * Owns who holds which accepted shard variant: one bidirectional index
 * (variant key -> holders, peer -> holdings), so the two directions cannot
 * disagree, plus the variants orphaned (accepted, last holder gone, to be
 * encoded again). Keys are variantKeyString() forms.
 */
const NONE: ReadonlySet<string> = new Set();

export class AvailabilityIndex {
  private readonly byKey = new Map<string, Set<string>>();
  private readonly byPeer = new Map<string, Set<string>>();
  private readonly orphans = new Set<string>();

  /** `maxPerPeer`: the most keys one peer may hold in the index (claims beyond are ignored). */
  constructor(private readonly maxPerPeer: number) {}

  /** Variant key -> ids of the peers holding its accepted bytes (read-only view). */
  get holders(): ReadonlyMap<string, ReadonlySet<string>> {
    return this.byKey;
  }

  holdersOf(key: string): ReadonlySet<string> {
    return this.byKey.get(key) ?? NONE;
  }

  heldBy(peerId: string): ReadonlySet<string> {
    return this.byPeer.get(peerId) ?? NONE;
  }

  holds(peerId: string, key: string): boolean {
    return this.byKey.get(key)?.has(peerId) ?? false;
  }

  /** Records a holder. Returns false when the peer is at its cap: one encoder cannot grow the index without bound. */
  add(peerId: string, key: string): boolean {
    let mine = this.byPeer.get(peerId);
    if (mine?.has(key)) return true;
    if ((mine?.size ?? 0) >= this.maxPerPeer) return false;
    if (!mine) this.byPeer.set(peerId, (mine = new Set()));
    mine.add(key);
    let set = this.byKey.get(key);
    if (!set) this.byKey.set(key, (set = new Set()));
    set.add(peerId);
    return true;
  }

  /** Forgets one holder. Returns true when that was the key's last holder (the caller decides about the orphan). */
  remove(peerId: string, key: string): boolean {
    const mine = this.byPeer.get(peerId);
    if (mine?.delete(key) && mine.size === 0) this.byPeer.delete(peerId);
    const set = this.byKey.get(key);
    if (!set?.delete(peerId)) return false;
    if (set.size > 0) return false;
    this.byKey.delete(key);
    return true;
  }

  /** Forgets every holding of a peer. Returns the keys that lost their last holder. */
  removePeer(peerId: string): string[] {
    const lost: string[] = [];
    for (const key of [...this.heldBy(peerId)]) if (this.remove(peerId, key)) lost.push(key);
    return lost;
  }

  /** Forgets every holder of `key` but `keep` (their bytes are no longer the accepted variant). Returns those dropped. */
  removeAllBut(key: string, keep: string | undefined): string[] {
    const dropped = [...this.holdersOf(key)].filter((p) => p !== keep);
    for (const p of dropped) this.remove(p, key);
    return dropped;
  }

  /** Forgets every key starting with `prefix` (a deleted content), holders and orphans alike. */
  removePrefix(prefix: string): void {
    for (const key of [...this.byKey.keys()]) {
      if (!key.startsWith(prefix)) continue;
      for (const p of [...this.byKey.get(key)!]) this.remove(p, key);
    }
    for (const key of [...this.orphans]) if (key.startsWith(prefix)) this.orphans.delete(key);
  }

  /** An accepted variant with no holder left, to be encoded again (live state: not saved). */
  markOrphaned(key: string): void {
    this.orphans.add(key);
  }

  /** The variant is available again (a holder came back) or was replaced or withdrawn. */
  clearOrphan(key: string): void {
    this.orphans.delete(key);
  }

  isOrphaned(key: string): boolean {
    return this.orphans.has(key);
  }
}
