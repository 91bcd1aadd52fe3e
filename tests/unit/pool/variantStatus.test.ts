import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ContentStore } from '../../../signaling/ContentStore.ts';
import { publishedStore, removeStores } from './fixtures.ts';

afterEach(removeStores);

async function published() {
  const { dir, store, content } = await publishedStore(2);
  const inFlight = new Set<string>();
  const orphans = new Set<string>();
  const s = (key: string) => key.slice(key.indexOf('/') + 1);
  store.setLiveState({ encoding: (k) => inFlight.has(s(k)), orphaned: (k) => orphans.has(s(k)) });
  const status = (r: string, i: number) => content.map.shards[i]!.renditions[r]!.status;
  return { dir, store, content, inFlight, orphans, status };
}

describe('shard-variant status (ContentStore the only writer)', () => {
  it('is computed: failed if marked, ready if accepted and not orphaned, encoding if in flight, else pending', async () => {
    const t = await published();
    expect(t.status('180p', 0)).toBe('pending');
    t.inFlight.add('180p/0');
    expect(t.status('180p', 0)).toBe('encoding');
    t.store.accept('c', '180p', 0, { sha256: 'a'.repeat(64), size: 10 });
    t.inFlight.delete('180p/0');
    expect(t.status('180p', 0)).toBe('ready');
    t.orphans.add('180p/0');
    expect(t.status('180p', 0)).toBe('pending');
    t.store.markFailed('c', '180p', 0);
    expect(t.status('180p', 0)).toBe('failed');
    t.store.accept('c', '180p', 0, { sha256: 'b'.repeat(64), size: 10 });
    t.orphans.clear();
    expect(t.status('180p', 0)).toBe('ready');
    t.store.revoke('c', '180p', 0);
    expect(t.status('180p', 0)).toBe('pending');
    // Nobody else writes it.
    expect(() => {
      (t.content.map.shards[0]!.renditions['180p'] as { status: string }).status = 'ready';
    }).toThrow(TypeError);
  });

  it('is served with the stable field names, and saved without live state', async () => {
    const t = await published();
    t.store.accept('c', '90p', 1, { sha256: 'a'.repeat(64), size: 10 });
    t.store.markFailed('c', '90p', 2);
    t.inFlight.add('180p/1');
    t.orphans.add('90p/1');
    const served = JSON.parse(JSON.stringify(t.content.map));
    expect(served.shards[1].renditions['180p']).toEqual({ status: 'encoding' });
    expect(served.shards[1].renditions['90p']).toEqual({ status: 'pending', sha256: 'a'.repeat(64), size: 10 });
    await t.store.snapshot('c');
    const saved = JSON.parse(fs.readFileSync(path.join(t.dir, 'contents', 'c', 'map.json'), 'utf8'));
    expect(saved.shards[1].renditions['180p'].status).toBe('pending');
    expect(saved.shards[1].renditions['90p'].status).toBe('ready');
    expect(saved.shards[2].renditions['90p'].status).toBe('failed');
    // A restart reads back the durable half.
    const again = new ContentStore(t.dir, 10_000);
    await again.open();
    const m = again.get('c')!.map;
    expect([m.shards[1]!.renditions['90p']!.status, m.shards[2]!.renditions['90p']!.status, m.shards[1]!.renditions['180p']!.status]).toEqual([
      'ready',
      'failed',
      'pending',
    ]);
    await again.close();
    await t.store.close();
  });
});
