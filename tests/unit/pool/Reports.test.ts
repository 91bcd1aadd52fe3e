import { describe, expect, it } from 'vitest';
import { MAX_DEMOTIONS_PER_REPORTER, Reports } from '../../../signaling/pool/Reports.ts';
import { fakeClock } from './fixtures.ts';

describe('Reports', () => {
  it('counts a report once per reporter, shard and peer, within the reporter budget, refilled over a minute', () => {
    const clock = fakeClock();
    const r = new Reports({ reportsPerMinute: 3 }, clock.now);
    expect(r.consider('v', 'c/v/0', 'e')).toBe('counted');
    expect(r.consider('v', 'c/v/0', 'e')).toBe('duplicate');
    expect(r.consider('v', 'c/v/1', 'e')).toBe('counted');
    expect(r.consider('v', 'c/v/0', 'f')).toBe('counted');
    expect(r.consider('v', 'c/v/2', 'e')).toBe('over-budget');
    // Another reporter has its own budget.
    expect(r.consider('w', 'c/v/2', 'e')).toBe('counted');
    clock.t += 20_000;
    expect(r.consider('v', 'c/v/2', 'e')).toBe('counted');
    expect(r.consider('v', 'c/v/3', 'e')).toBe('over-budget');
  });

  it('demotes a reported peer for its reporter only, until the reporter leaves', () => {
    const clock = fakeClock();
    const r = new Reports({ reportsPerMinute: 10 }, clock.now);
    r.consider('v', 'c/v/0', 'e');
    expect(r.demoted('v', 'c/v/0', 'e')).toBe(true);
    expect(r.demoted('v', 'c/v/1', 'e')).toBe(false);
    expect(r.demoted('w', 'c/v/0', 'e')).toBe(false);
    r.forget('v');
    expect(r.demoted('v', 'c/v/0', 'e')).toBe(false);
  });

  it('keeps at most MAX_DEMOTIONS_PER_REPORTER per reporter, the oldest forgotten first', () => {
    const clock = fakeClock();
    const r = new Reports({ reportsPerMinute: MAX_DEMOTIONS_PER_REPORTER + 10 }, clock.now);
    for (let i = 0; i <= MAX_DEMOTIONS_PER_REPORTER; i++) expect(r.consider('v', `c/v/${i}`, 'e')).toBe('counted');
    expect(r.demoted('v', 'c/v/0', 'e')).toBe(false);
    expect(r.demoted('v', `c/v/${MAX_DEMOTIONS_PER_REPORTER}`, 'e')).toBe(true);
  });
});
