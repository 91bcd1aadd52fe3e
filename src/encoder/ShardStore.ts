/**
 * The shards an encoder tab holds: in memory under a byte budget, mirrored to
 * IndexedDB so a reloaded tab still has them (and announces them again).
 *
 * Eviction takes the least recently served shard first. Before a shard goes,
 * `beforeEvict` is awaited: the tab tells the pool, which may need that copy
 * (it can be the last one), so nothing disappears silently.
 */
import { createStore, del, set, values, type UseStore } from 'idb-keyval';
import { shardKeyString, type ShardKey } from '../shared/shardMap.ts';

export interface StoredShard {
  key: ShardKey;
  sha256: string;
  size: number;
  bytes: Uint8Array;
  /** performance.now() / Date.now() of the last time it was served or stored. */
  lastUsed: number;
}

/** Where shards survive a reload. */
export interface ShardPersistence {
  loadAll(): Promise<StoredShard[]>;
  put(s: StoredShard): Promise<void>;
  delete(key: string): Promise<void>;
}

export class MemoryPersistence implements ShardPersistence {
  readonly data = new Map<string, StoredShard>();
  async loadAll() {
    return [...this.data.values()];
  }
  async put(s: StoredShard) {
    this.data.set(shardKeyString(s.key), s);
  }
  async delete(key: string) {
    this.data.delete(key);
  }
}

/**
 * IndexedDB through idb-keyval: one object store ("shards") keyed by
 * "content/rendition/index", in the database this class always used, so
 * shards kept by an older tab are still found.
 */
export class IndexedDbPersistence implements ShardPersistence {
  private store: UseStore | undefined;
  constructor(private readonly name = 'shardcast-shards') {}

  /** Opened on first use: a tab without persistence never touches IndexedDB. */
  private get db(): UseStore {
    return (this.store ??= createStore(this.name, 'shards'));
  }

  loadAll(): Promise<StoredShard[]> {
    return values<StoredShard>(this.db);
  }
  put(sh: StoredShard): Promise<void> {
    return set(shardKeyString(sh.key), sh, this.db);
  }
  delete(key: string): Promise<void> {
    return del(key, this.db);
  }
}

export class ShardStore {
  private readonly shards = new Map<string, StoredShard>();
  private bytes = 0;

  constructor(
    private budget: number,
    private readonly persistence: ShardPersistence | undefined,
    /** Awaited before a shard is dropped; the tab tells the pool here. */
    private readonly beforeEvict: (s: StoredShard) => Promise<void> | void = () => {},
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Loads what a previous session persisted (within the budget, most recent first). */
  async restore(): Promise<StoredShard[]> {
    if (!this.persistence) return [];
    let all: StoredShard[];
    try {
      all = await this.persistence.loadAll();
    } catch (e) {
      console.warn('could not read stored shards:', e);
      return [];
    }
    all.sort((a, b) => b.lastUsed - a.lastUsed);
    const kept: StoredShard[] = [];
    for (const s of all) {
      if (this.bytes + s.size > this.budget) {
        await this.persistence.delete(shardKeyString(s.key)).catch(() => {});
        continue;
      }
      this.shards.set(shardKeyString(s.key), s);
      this.bytes += s.size;
      kept.push(s);
    }
    return kept;
  }

  /** Stores a shard, evicting least-recently-served ones to make room. */
  async put(key: ShardKey, sha256: string, bytes: Uint8Array): Promise<void> {
    const k = shardKeyString(key);
    const old = this.shards.get(k);
    if (old) {
      this.bytes -= old.size;
      this.shards.delete(k);
    }
    await this.makeRoom(bytes.byteLength);
    const s: StoredShard = { key, sha256, size: bytes.byteLength, bytes, lastUsed: this.now() };
    this.shards.set(k, s);
    this.bytes += s.size;
    await this.persistence?.put(s).catch((e: unknown) => console.warn('could not persist shard:', e));
  }

  /** Returns a shard and marks it recently served. */
  get(key: ShardKey): StoredShard | undefined {
    const s = this.shards.get(shardKeyString(key));
    if (s) s.lastUsed = this.now();
    return s;
  }

  has(key: ShardKey): boolean {
    return this.shards.has(shardKeyString(key));
  }

  list(): StoredShard[] {
    return [...this.shards.values()];
  }

  get usedBytes(): number {
    return this.bytes;
  }

  get count(): number {
    return this.shards.size;
  }

  async delete(key: ShardKey): Promise<void> {
    const k = shardKeyString(key);
    const s = this.shards.get(k);
    if (!s) return;
    this.shards.delete(k);
    this.bytes -= s.size;
    await this.persistence?.delete(k).catch(() => {});
  }

  private async makeRoom(incoming: number): Promise<void> {
    if (incoming > this.budget) throw new Error(`a shard of ${incoming} bytes is larger than the whole store budget (${this.budget})`);
    while (this.bytes + incoming > this.budget) {
      let victim: StoredShard | undefined;
      for (const s of this.shards.values()) if (!victim || s.lastUsed < victim.lastUsed) victim = s;
      if (!victim) break;
      await this.beforeEvict(victim);
      await this.delete(victim.key);
    }
  }
}

/**
 * A shard can be evicted between its put and the report that the tab holds
 * it (another put made room while an upload ran); its drop was announced
 * before the pool counted the tab as a holder, so this announces it again.
 */
export function reportIfGone(store: ShardStore, key: ShardKey, send: (msg: { type: 'shard-dropped'; key: ShardKey }) => unknown): void {
  if (!store.has(key)) send({ type: 'shard-dropped', key });
}
