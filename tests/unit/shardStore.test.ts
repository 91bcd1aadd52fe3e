import { describe, expect, it } from 'vitest';
import { MemoryPersistence, ShardStore } from '../../src/encoder/ShardStore.ts';

const key = (index: number) => ({ contentId: 'c', rendition: '360p', index });
const bytes = (n: number) => new Uint8Array(n).fill(7);

function clock() {
  let t = 0;
  return () => ++t;
}

describe('ShardStore', () => {
  it('keeps shards under the byte budget, evicting the least recently served first', async () => {
    const evicted: number[] = [];
    const store = new ShardStore(300, undefined, (s) => void evicted.push(s.key.index), clock());
    await store.put(key(0), 'h0', bytes(100));
    await store.put(key(1), 'h1', bytes(100));
    await store.put(key(2), 'h2', bytes(100));
    store.get(key(0)); // served: now the most recent
    await store.put(key(3), 'h3', bytes(100));
    expect(evicted).toEqual([1]);
    expect(store.has(key(0))).toBe(true);
    expect(store.usedBytes).toBe(300);
    await store.put(key(4), 'h4', bytes(250));
    expect(evicted).toEqual([1, 2, 0, 3]);
    expect(store.count).toBe(1);
  });

  it('tells the pool before a shard goes, and waits for it', async () => {
    const order: string[] = [];
    const store = new ShardStore(
      100,
      undefined,
      async (s) => {
        order.push(`tell ${s.key.index}`);
        await new Promise((r) => setTimeout(r, 5));
        order.push(`told ${s.key.index}`);
      },
      clock(),
    );
    await store.put(key(0), 'h0', bytes(100));
    await store.put(key(1), 'h1', bytes(100));
    expect(order).toEqual(['tell 0', 'told 0']);
    expect(store.has(key(0))).toBe(false);
  });

  it('restores persisted shards after a reload, within the budget', async () => {
    const p = new MemoryPersistence();
    const a = new ShardStore(1000, p, undefined, clock());
    await a.put(key(0), 'h0', bytes(400));
    await a.put(key(1), 'h1', bytes(400));
    const b = new ShardStore(500, p);
    const restored = await b.restore();
    expect(restored.map((s) => s.key.index)).toEqual([1]); // the most recent fits
    expect(b.get(key(1))!.bytes).toEqual(bytes(400));
    expect(p.data.size).toBe(1); // the one that did not fit is gone from disk too
  });

  it('refuses a shard bigger than the budget', async () => {
    const store = new ShardStore(10, undefined);
    await expect(store.put(key(0), 'h', bytes(11))).rejects.toThrow(/larger than the whole store budget/);
  });
});
