import { describe, expect, it } from 'vitest';
import type { Job } from '../../../src/shared/protocol.ts';
import { JobLedger } from '../../../signaling/pool/JobLedger.ts';
import type { ActiveJob, CrossCheck } from '../../../signaling/pool/types.ts';

const job = (id: string, indices: number[], uploadToken?: string): Job =>
  ({
    id,
    contentId: 'c',
    rendition: 'v',
    kind: 'video',
    shards: indices.map((index) => ({ index, start: index * 2, duration: 2, frames: 60, firstFrame: index * 60 })),
    sourceUrl: '',
    start: 0,
    end: 1,
    deadline: 0,
    upload: !!uploadToken,
    ...(uploadToken && { uploadToken }),
  }) as Job;
const active = (j: Job, peerId = 'e', check?: CrossCheck): ActiveJob => ({
  job: j,
  peerId,
  assignedAt: 0,
  done: new Set(),
  progress: 0,
  klass: 'background',
  ...(check && { check, results: new Map() }),
});

describe('JobLedger', () => {
  it('records a job by id, by peer, by token, with its shards in flight until done', () => {
    const l = new JobLedger();
    const aj = active(job('j1', [0, 1], 'tok'));
    l.add(aj);
    expect(l.jobsOf('e').has('j1')).toBe(true);
    expect(l.byToken('tok')).toBe(aj);
    expect(l.isInFlight('c/v/0')).toBe(true);
    l.doneShard(aj, { contentId: 'c', rendition: 'v', index: 0 });
    expect(l.isInFlight('c/v/0')).toBe(false);
    expect(l.own('e', 'j1')).toBe(aj);
    expect(() => l.own('other', 'j1')).toThrow(/not assigned to you/);
    l.remove('j1');
    expect(l.byToken('tok')).toBeUndefined();
    expect(l.jobsOf('e').size).toBe(0);
  });

  it('keeps checked uploads for running jobs only, and forgets them with the job', () => {
    const l = new JobLedger();
    expect(l.stage('nope', 0, { sha256: 'x', size: 1 })).toBe(false);
    l.add(active(job('j1', [0])));
    expect(l.stage('j1', 0, { sha256: 'x', size: 1 })).toBe(true);
    expect(l.staging('j1', 0)?.sha256).toBe('x');
    l.remove('j1');
    expect(l.staging('j1', 0)).toBeUndefined();
  });

  it('re-queues the unfinished shards; counted failures use up attempts, a lost socket does not', () => {
    const l = new JobLedger();
    const notReady = () => false;
    l.add(active(job('j1', [0, 1, 2])));
    l.get('j1')!.done.add(0);
    const r = l.requeue('j1', false, 2, notReady)!;
    expect(r.indices).toEqual([1, 2]);
    // Even an uncounted re-queue marks the shards as retries (they travel together).
    expect(l.attemptsOf('c/v/1')).toBe(1);
    l.add(active(job('j2', [1, 2])));
    expect(l.requeue('j2', true, 2, notReady)!.failed.map((f) => f.key.index)).toEqual([1, 2]);
    expect(l.isInFlight('c/v/1')).toBe(false);
    expect(l.requeue('j2', true, 2, notReady)).toBeUndefined();
  });

  it('skips shards accepted meanwhile, and puts nothing back for a check job', () => {
    const l = new JobLedger();
    l.add(active(job('j1', [0, 1])));
    expect(l.requeue('j1', true, 4, (k) => k.index === 0)!.indices).toEqual([1]);
    l.add(active(job('chk', [5]), 'e', {} as CrossCheck));
    expect(l.isInFlight('c/v/5')).toBe(false);
    expect(l.requeue('chk', true, 4, () => false)!.indices).toEqual([]);
  });

  it('takes a deleted content off the ledger', () => {
    const l = new JobLedger();
    l.add(active(job('j1', [0])));
    expect(l.removeContent('c').map((aj) => aj.job.id)).toEqual(['j1']);
    expect(l.jobs.size).toBe(0);
    expect(l.isInFlight('c/v/0')).toBe(false);
  });
});
