import { describe, expect, it } from 'vitest';
import { Trust } from '../../signaling/policy/Trust.ts';

const CONFIG = { verifySampleRate: 0.1, verifyNewEncoderJobs: 3, verifyTrustGrowth: 0.5 };

/** A fixed sequence of draws, repeated. */
const draws = (...xs: number[]) => {
  let i = 0;
  return () => xs[i++ % xs.length]!;
};

describe('Trust', () => {
  it('checks every job of a new encoder, then less and less as checks pass, never below the sample rate', () => {
    const t = new Trust(CONFIG, draws(0.99));
    const rates: number[] = [];
    for (let i = 0; i < 30; i++) {
      rates.push(t.rate('e'));
      t.passed('e');
    }
    expect(rates.slice(0, 3)).toEqual([1, 1, 1]);
    // 1 / (1 + 0.5 n) after the first three: 0.667, 0.5, 0.4, ...
    expect(rates[3]).toBeCloseTo(2 / 3, 6);
    expect(rates[4]).toBeCloseTo(0.5, 6);
    for (let i = 4; i < rates.length; i++) expect(rates[i]).toBeLessThanOrEqual(rates[i - 1]!);
    expect(rates[29]).toBe(0.1);
    // Draws decide: with a draw of 0.99 a trusted encoder is not checked, a new one always is.
    expect(t.shouldCheck('e')).toBe(false);
    expect(t.shouldCheck('new')).toBe(true);
    expect(t.counters.checksPlanned).toBe(1);
  });

  it('a failed check puts the encoder back to checking every job and hands back its unverified shards', () => {
    const t = new Trust(CONFIG);
    for (let i = 0; i < 10; i++) t.passed('e');
    expect(t.rate('e')).toBeLessThan(0.3);
    for (const k of ['c/v/0', 'c/v/1', 'c/v/2', 'd/v/0']) t.accepted('e', k);
    t.verified('e', 'c/v/0');
    t.settle('e', 'c/v/1');
    expect(t.unverifiedCount('e')).toBe(2);
    expect(t.failed('e').sort()).toEqual(['c/v/2', 'd/v/0']);
    expect(t.rate('e')).toBe(1);
    expect(t.unverifiedCount('e')).toBe(0);
    expect(t.get('e')).toMatchObject({ passed: 10, failed: 1, passedInARow: 0 });
    expect(t.counters).toMatchObject({ shardsVerified: 1, convicted: 1, revoked: 2 });
  });

  it('never checks when both the sample rate and the new-encoder checks are off', () => {
    const t = new Trust({ verifySampleRate: 0, verifyNewEncoderJobs: 0, verifyTrustGrowth: 0.5 }, draws(0));
    expect(t.rate('e')).toBe(0);
    expect(t.shouldCheck('e')).toBe(false);
  });

  it('forgets the unverified shards of a deleted content', () => {
    const t = new Trust(CONFIG);
    t.accepted('e', 'gone/v/0');
    t.accepted('e', 'kept/v/0');
    t.forgetPrefix('gone/');
    expect(t.failed('e')).toEqual(['kept/v/0']);
  });

  it('checks the next job of a suspected encoder whatever its trust, once', () => {
    const t = new Trust({ verifySampleRate: 0, verifyNewEncoderJobs: 0, verifyTrustGrowth: 0.5 }, draws(0.99));
    t.suspect('e');
    expect(t.shouldCheck('e')).toBe(true);
    expect(t.shouldCheck('e')).toBe(false);
    t.accepted('e', 'c/v/0');
    expect(t.isUnverified('e', 'c/v/0')).toBe(true);
    t.verified('e', 'c/v/0');
    expect(t.isUnverified('e', 'c/v/0')).toBe(false);
  });
});
