import { describe, expect, it } from 'vitest';
import { Demand } from '../../../signaling/policy/Demand.ts';
import { Health } from '../../../signaling/policy/Health.ts';
import { AvailabilityIndex } from '../../../signaling/pool/AvailabilityIndex.ts';
import { Replication } from '../../../signaling/pool/Replication.ts';
import { Sessions } from '../../../signaling/pool/Sessions.ts';
import { accepted, contentOf, fakeClock, fakeOutbox, fakeStore, key } from './fixtures.ts';

const config = {
  replicateAboveRate: 3,
  perReplicaRate: 3,
  maxReplicas: 4,
  busyServing: 3,
  releaseBelowRate: 0.5,
  releaseAfterMs: 30_000,
  replicateTimeoutMs: 10_000,
};

function setup(cached = false) {
  const clock = fakeClock();
  const c = contentOf('c', 10);
  accepted(c, '180p', 0, 's'.repeat(64));
  const { store } = fakeStore(c);
  const index = new AvailabilityIndex(100);
  const sessions = new Sessions({ jobsOf: () => new Set(), holdingsOf: (id) => index.heldBy(id) });
  const health = new Health({ quarantineAfterFailures: 3, quarantineAfterInvalid: 2, quarantineMs: 60_000 }, clock.now);
  const demand = new Demand({ demandHalfLifeMs: 10_000, viewerActiveMs: 10_000 }, clock.now);
  const box = fakeOutbox();
  let scheduled = 0;
  const r = new Replication(
    store,
    index,
    sessions,
    health,
    demand,
    () => cached,
    box.outbox,
    config,
    clock.now,
    () => scheduled++,
  );
  const encoder = (id?: string) => sessions.open({ send: () => {}, close: () => {} }, 'encoder', clock.t, undefined, id).peer;
  return { clock, c, index, sessions, demand, box, r, encoder, scheduled: () => scheduled };
}

describe('Replication', () => {
  it('an orphan without a cached copy is marked to be encoded again, once scheduled', () => {
    const s = setup(false);
    s.r.orphaned('c/180p/0');
    expect(s.index.isOrphaned('c/180p/0')).toBe(true);
    expect(s.box.of('shard-orphaned')).toEqual([{ key: 'c/180p/0', action: 're-encode' }]);
    expect(s.scheduled()).toBe(1);
    // Not an accepted variant: nothing to do.
    s.r.orphaned('c/180p/1');
    expect(s.box.events).toHaveLength(1);
  });

  it('an orphan with a cached copy is copied from the cache by the least-loaded encoder', () => {
    const s = setup(true);
    const a = s.encoder();
    const b = s.encoder();
    a.serving = 2;
    s.r.orphaned('c/180p/0');
    expect(s.index.isOrphaned('c/180p/0')).toBe(false);
    expect(s.box.sent).toEqual([{ to: b.id, msg: expect.objectContaining({ type: 'replicate', cached: true, from: [] }) }]);
  });

  it('copies an evicted last copy back only into a store with room, never into the tab that dropped it', () => {
    const s = setup(true);
    const full = s.encoder();
    full.capabilities = { engines: [], maxJobs: 1, storageBytes: 1000 };
    full.heldBytes = 900;
    const dropper = s.encoder();
    s.r.orphaned('c/180p/0', dropper.id);
    expect(s.box.sent).toEqual([]);
    const roomy = s.encoder();
    s.r.orphaned('c/180p/0', dropper.id);
    expect(s.box.sent.map((m) => m.to)).toEqual([roomy.id]);
  });

  it('spreads one pass of orders over encoders (orders count as load), and lapsed orders back an encoder off', () => {
    const s = setup(true);
    const a = s.encoder();
    const b = s.encoder();
    s.r.replicateTo('c/180p/0', 'x', 1, 1, 'test');
    s.r.replicateTo('c/180p/1', 'x', 1, 1, 'test');
    expect(s.box.sent.map((m) => m.to)).toEqual([a.id, b.id]);
    s.clock.t += config.replicateTimeoutMs + 1;
    s.r.pass();
    s.r.beginPass();
    // Both let their orders lapse: neither is asked for a while.
    expect(s.r.replicateTo('c/180p/2', 'x', 1, 1, 'test')).toBe(0);
  });

  it('a stored copy the encoder was asked for makes it a holder and a releasable replica; an unasked one is refused', () => {
    const s = setup(true);
    const a = s.encoder();
    expect(() => s.r.stored(a, { type: 'shard-stored', key: key('c', '180p', 0), sha256: 's'.repeat(64), size: 1000 }, () => {})).toThrow(/no replication/);
    s.r.replicateTo('c/180p/0', 's'.repeat(64), 1000, 1, 'test');
    expect(() => s.r.stored(a, { type: 'shard-stored', key: key('c', '180p', 0), sha256: 'x'.repeat(64), size: 1000 }, () => {})).toThrow(/does not match/);
    s.r.replicateTo('c/180p/0', 's'.repeat(64), 1000, 1, 'test');
    s.r.stored(a, { type: 'shard-stored', key: key('c', '180p', 0), sha256: 's'.repeat(64), size: 1000 }, (p, k) => void s.index.add(p, k));
    expect(s.r.replicas.get('c/180p/0')?.has(a.id)).toBe(true);
    expect(s.index.holds(a.id, 'c/180p/0')).toBe(true);
  });

  it('replicates a hot shard up to its want, and releases the replicas once it has been cool long enough, never the last copy', () => {
    const s = setup(false);
    const origin = s.encoder();
    s.index.add(origin.id, 'c/180p/0');
    const spares = [s.encoder(), s.encoder(), s.encoder()];
    // 9 req/s wants 3 copies.
    for (let i = 0; i < 90; i++) s.demand.locate(`v${i}`, 'c', 0, 1);
    s.r.pass();
    const asked = s.box.sent.filter((m) => m.msg.type === 'replicate').map((m) => m.to);
    expect(asked).toHaveLength(2);
    for (const id of asked)
      s.r.stored(s.sessions.get(id)!, { type: 'shard-stored', key: key('c', '180p', 0), sha256: 's'.repeat(64), size: 1000 }, (p, k) => void s.index.add(p, k));
    expect(s.index.holdersOf('c/180p/0').size).toBe(3);
    s.clock.t += 200_000; // demand decays
    s.r.pass();
    s.clock.t += config.releaseAfterMs;
    s.r.pass();
    expect([...s.index.holdersOf('c/180p/0')]).toEqual([origin.id]);
    expect(s.box.of('replica-released')).toHaveLength(2);
    expect(spares.length).toBe(3);
  });

  it('orphans accepted shards that nobody announced after a restart, unless cached', () => {
    const s = setup(false);
    s.r.orphanUnheld();
    expect(s.index.isOrphaned('c/180p/0')).toBe(true);
  });
});
