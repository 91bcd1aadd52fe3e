import { describe, expect, it } from 'vitest';
import { TypedEmitter } from '../../../src/shared/events.ts';
import { RECENT_CAPS, RECENT_EVENTS, Stats } from '../../../signaling/pool/Stats.ts';
import type { PoolEvents } from '../../../signaling/pool/types.ts';

const k = { contentId: 'c', rendition: 'v', index: 0 };

describe('Stats', () => {
  it('derives every counter from the events', () => {
    const ev = new TypedEmitter<PoolEvents>();
    const s = new Stats(ev, () => 7);
    ev.emit('job-assigned', { jobId: 'j', peerId: 'e', key: 'c/v', shards: 1, klass: 'live' });
    ev.emit('job-done', { jobId: 'j', peerId: 'e' });
    ev.emit('job-requeued', { jobId: 'j', peerId: 'e', indices: [], rendition: 'v', contentId: 'c', reason: '' });
    ev.emit('check-requeued', { jobId: 'j', peerId: 'e' });
    ev.emit('shard-accepted', { key: k, peerId: 'e', sha256: 'x' });
    ev.emit('shard-accepted', { key: k, peerId: 'e', sha256: 'x', replaced: true });
    ev.emit('shard-rejected', { key: k, peerId: 'e', reason: 'r' });
    ev.emit('peer-reported', { key: k, peerId: 'e', reason: 'r', reporter: 'viewer', recheck: false });
    ev.emit('shard-staged', { jobId: 'j', index: 0, size: 100, checkMs: 2.5 });
    ev.emit('upload-refused', { jobId: 'j', key: k, reason: 'r' });
    ev.emit('located', { peerId: 'v', contentId: 'c' });
    ev.emit('bad-message', { peerId: 'v', code: 'x' });
    expect(s.counters).toMatchObject({
      jobsAssigned: 1,
      jobsCompleted: 1,
      requeues: 2,
      shardsAccepted: 1,
      shardsRejected: 1,
      peerReports: 1,
      intakeChecks: 1,
      intakeCheckMs: 2.5,
      intakeBytes: 100,
      intakeRefused: 1,
      locates: 1,
      badMessages: 1,
    });
  });

  it('logs the listed events with the time, keeping the last ones', () => {
    const ev = new TypedEmitter<PoolEvents>();
    const s = new Stats(ev, () => 7);
    ev.emit('job-done', { jobId: 'j', peerId: 'e' }); // counted, not logged
    for (let i = 0; i < RECENT_EVENTS + 5; i++) ev.emit('content-complete', { contentId: `c${i}` });
    expect(s.recent).toHaveLength(RECENT_EVENTS);
    expect(s.recent[0]).toEqual({ at: 7, type: 'content-complete', detail: { contentId: 'c5' } });
  });

  it('keeps reports to their cap in the log, so a flood of them leaves the pool events there', () => {
    const ev = new TypedEmitter<PoolEvents>();
    const s = new Stats(ev, () => 7);
    ev.emit('content-complete', { contentId: 'real' });
    for (let i = 0; i < RECENT_EVENTS * 2; i++) ev.emit('peer-reported', { key: { ...k, index: i }, peerId: 'e', reason: 'r', reporter: 'v', recheck: false });
    const reports = s.recent.filter((r) => r.type === 'peer-reported');
    expect(reports).toHaveLength(RECENT_CAPS['peer-reported']!);
    // The newest ones stay.
    expect((reports.at(-1)!.detail as { key: { index: number } }).key.index).toBe(RECENT_EVENTS * 2 - 1);
    expect(s.recent[0]).toEqual({ at: 7, type: 'content-complete', detail: { contentId: 'real' } });
    expect(s.counters.peerReports).toBe(RECENT_EVENTS * 2);
  });
});
