import { describe, expect, it } from 'vitest';
import { AvailabilityIndex } from '../../../signaling/pool/AvailabilityIndex.ts';

describe('AvailabilityIndex', () => {
  it('keeps holders and holdings as one index: both directions always agree', () => {
    const ix = new AvailabilityIndex(10);
    ix.add('a', 'c/v/0');
    ix.add('b', 'c/v/0');
    ix.add('a', 'c/v/1');
    expect([...ix.holdersOf('c/v/0')]).toEqual(['a', 'b']);
    expect([...ix.heldBy('a')]).toEqual(['c/v/0', 'c/v/1']);
    expect(ix.remove('a', 'c/v/0')).toBe(false);
    expect([...ix.heldBy('a')]).toEqual(['c/v/1']);
    expect(ix.remove('b', 'c/v/0')).toBe(true); // the last holder
    expect(ix.holders.has('c/v/0')).toBe(false);
    expect(ix.remove('b', 'c/v/0')).toBe(false); // not a holder any more
  });

  it('caps what one peer can claim', () => {
    const ix = new AvailabilityIndex(2);
    expect(ix.add('a', 'k0')).toBe(true);
    expect(ix.add('a', 'k1')).toBe(true);
    expect(ix.add('a', 'k2')).toBe(false);
    expect(ix.add('a', 'k1')).toBe(true); // held already: not a new claim
    expect(ix.heldBy('a').size).toBe(2);
    expect(ix.holders.has('k2')).toBe(false);
  });

  it('drops a leaving peer and names the keys left with no holder', () => {
    const ix = new AvailabilityIndex(10);
    ix.add('a', 'k0');
    ix.add('a', 'k1');
    ix.add('b', 'k1');
    expect(ix.removePeer('a')).toEqual(['k0']);
    expect(ix.heldBy('a').size).toBe(0);
    expect([...ix.holdersOf('k1')]).toEqual(['b']);
  });

  it('drops every holder but one of a replaced variant, and forgets a deleted content with its orphans', () => {
    const ix = new AvailabilityIndex(10);
    for (const p of ['a', 'b', 'c']) ix.add(p, 'x/v/0');
    ix.add('a', 'y/v/0');
    expect(ix.removeAllBut('x/v/0', 'b')).toEqual(['a', 'c']);
    expect([...ix.holdersOf('x/v/0')]).toEqual(['b']);
    ix.markOrphaned('x/v/1');
    ix.removePrefix('x/');
    expect(ix.holders.has('x/v/0')).toBe(false);
    expect(ix.isOrphaned('x/v/1')).toBe(false);
    expect([...ix.heldBy('a')]).toEqual(['y/v/0']);
  });

  it('tracks orphans apart from holders', () => {
    const ix = new AvailabilityIndex(10);
    ix.markOrphaned('k');
    expect(ix.isOrphaned('k')).toBe(true);
    ix.clearOrphan('k');
    expect(ix.isOrphaned('k')).toBe(false);
  });
});
