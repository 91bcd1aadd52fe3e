import { describe, expect, it } from 'vitest';
import { bandLayout, barsPath, cellTitle, eventLines, eventText, parseKey, type PoolEvent } from '../../src/ui/poolView.ts';

const names = new Map([['c1', 'clip.mp4']]);

describe('/pool view helpers', () => {
  it('cuts shards into bands of round widths that fit', () => {
    expect(bandLayout(34, 900)).toEqual({ columns: 34, bands: [{ start: 0, end: 34 }] });
    const big = bandLayout(1000, 1000);
    expect(big.columns).toBe(140);
    expect(big.bands).toHaveLength(8);
    expect(big.bands[7]).toEqual({ start: 980, end: 1000 });
    expect(bandLayout(0, 900).bands).toEqual([]);
  });

  it('draws demand bars relative to the peak, none for zero', () => {
    expect(barsPath([0, 4, 1], 0, 3, 4)).toBe('M1.1 1V0.000H1.9V1ZM2.1 1V0.500H2.9V1Z');
  });

  it('parses shard keys as strings and objects', () => {
    expect(parseKey('a/b/c/180p/12')).toEqual({ contentId: 'a/b/c', rendition: '180p', index: 12 });
    expect(parseKey({ contentId: 'c1', rendition: 'audio', index: 3 })).toEqual({ contentId: 'c1', rendition: 'audio', index: 3 });
    expect(parseKey('nonsense')).toBeUndefined();
  });

  it('titles a cell', () => {
    expect(cellTitle(12, '180p', 'ready', 2, true, 3.14)).toBe('shard 12 180p: ready, 2 holders, cached, 3.1 req/s');
    expect(cellTitle(0, 'audio', 'pending', 0, false, 0)).toBe('shard 0 audio: pending (not encoded yet), 0 holders, 0.0 req/s');
  });

  it('says what happened in words', () => {
    const at = 1_000_000;
    const t = (type: string, detail: unknown) => eventText({ at, type, detail }, names);
    expect(t('encoder-quarantined', { peerId: 'p1', reason: '3 jobs in a row failed or timed out', until: at + 120_000 })).toBe(
      'encoder p1 quarantined for 2 min: 3 jobs in a row failed or timed out',
    );
    expect(t('shard-orphaned', { key: 'c1/180p/7', action: 'from-cache' })).toBe(
      'shard 7 180p of clip.mp4 lost its last holder: an encoder copies it from the cache',
    );
    expect(t('replicate', { key: 'c1/180p/7', peerId: 'p2', from: 0, cached: true, reason: 'last holder left' })).toBe(
      'p2 asked to copy shard 7 180p of clip.mp4 from the cache — last holder left',
    );
    expect(t('job-preempted', { jobId: 'abcdef123', peerId: 'p3', for: 'c1/90p/40' })).toBe(
      'background job abcdef on p3 preempted for live shard 40 90p of clip.mp4',
    );
    expect(t('job-requeued', { jobId: 'abcdef123', peerId: 'p3', indices: [3, 4, 5], rendition: '90p', contentId: 'c1', reason: 'deadline passed' })).toBe(
      'job abcdef from p3 re-queued: 3 shards (3–5) 90p of clip.mp4 — deadline passed',
    );
    expect(t('peer-reported', { key: 'c1/180p/7', peerId: 'p2', reporter: 'v1', reason: 'hash mismatch', recheck: true })).toBe(
      'v1 reports shard 7 180p of clip.mp4 from p2: hash mismatch; encoding it again to check',
    );
    expect(t('something-new', { x: 1 })).toBe('something-new {"x":1}');
  });

  it('folds a burst of the same event about different shards into one line', () => {
    const ev = (at: number, type: string, detail: unknown): PoolEvent => ({ at, type, detail });
    const lines = eventLines(
      [
        ev(5000, 'shard-orphaned', { key: 'c1/180p/9', action: 're-encode' }),
        ev(5000, 'shard-orphaned', { key: 'c1/180p/8', action: 're-encode' }),
        ev(4999, 'shard-orphaned', { key: 'c1/180p/3', action: 're-encode' }),
        ev(4999, 'shard-orphaned', { key: 'c1/180p/2', action: 'from-cache' }),
        ev(4000, 'peer-lost', { peerId: 'p1', role: 'encoder', reason: 'socket closed', requeued: 0 }),
      ],
      names,
    );
    expect(lines.map((l) => [l.ev.type, l.count, l.lo, l.hi])).toEqual([
      ['shard-orphaned', 3, 3, 9],
      ['shard-orphaned', 1, 2, 2],
      ['peer-lost', 1, undefined, undefined],
    ]);
    expect(lines[0]!.text).toBe('shard 9 180p of clip.mp4 lost its last holder: it will be encoded again');
  });

  it('folds interleaved bursts per rendition, and not across a gap in time', () => {
    const rep = (at: number, key: string, rate: number, cached = false): PoolEvent => ({
      at,
      type: 'replicate',
      detail: { key, peerId: 'p1', from: 2, cached, reason: `demand ${rate.toFixed(1)} req/s` },
    });
    const lines = eventLines(
      [
        rep(9000, 'c1/90p/5', 4.1),
        rep(9000, 'c1/audio/5', 4.1, true),
        rep(8999, 'c1/90p/4', 3.9, true),
        rep(8999, 'c1/audio/4', 3.9),
        rep(1000, 'c1/90p/3', 1),
      ],
      names,
    );
    expect(lines.map((l) => [l.text.split(' — ')[0], l.count, l.lo, l.hi])).toEqual([
      ['p1 asked to copy shard 5 90p of clip.mp4 from 2 holders', 2, 4, 5],
      ['p1 asked to copy shard 5 audio of clip.mp4 from 2 holders or the cache', 2, 4, 5],
      ['p1 asked to copy shard 3 90p of clip.mp4 from 2 holders', 1, 3, 3],
    ]);
  });
});
