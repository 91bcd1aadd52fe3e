import { describe, expect, it } from 'vitest';
import type { VariantKey } from '../../../src/shared/variantKey.ts';
import type { Content } from '../../../signaling/ContentStore.ts';
import { candidates, plan, type PlanInput } from '../../../signaling/pool/Scheduler.ts';
import { contentOf, H264 } from './fixtures.ts';

const config = { liveWindowSeconds: 30, startSeconds: 4, jobSeconds: 4, jobMaxSeconds: 6, audioJobSeconds: 30 };

function input(contents: Content[], over: Partial<PlanInput> = {}): PlanInput {
  const st = (k: VariantKey) => contents.find((c) => c.meta.id === k.contentId)!.map.shards[k.index]!.renditions[k.rendition]!;
  return { contents, playheads: new Map(), isPending: (k) => st(k).status === 'pending', isRetry: () => false, predicted: () => 0, config, ...over };
}
const enc = (id: string, free = 1, score = 1) => ({ id, free, score, load: 0, joinedAt: 0, engines: H264 });

describe('Scheduler (pure)', () => {
  it('puts live work before start before background, re-queued work first within a class', () => {
    const c = contentOf('c', 40);
    const inp = input([c], { playheads: new Map([['c', [20]]]), isRetry: (k) => k.rendition === '90p' });
    const list = candidates(inp);
    expect(list.map((x) => `${x.klass} ${x.rendition}/${x.index}`).slice(0, 4)).toEqual(['live 90p/40', 'live 180p/40', 'live audio/40', 'start 90p/0']);
  });

  it('gives the best-scoring encoder the most urgent run, and never the same shard twice', () => {
    const c = contentOf('c', 20);
    const inp = input([c]);
    const p = plan(inp, candidates(inp), [enc('slow', 1, 0.5), enc('fast', 2, 0.9)], []);
    expect(p.assignments.map((a) => a.peerId)).toEqual(['fast', 'fast', 'slow']);
    const given = p.assignments.flatMap((a) => a.indices.map((i) => `${a.rendition}/${i}`));
    expect(new Set(given).size).toBe(given.length);
    expect(p.assignments[0]!.indices[0]).toBe(0);
    expect(p.assignments[0]!.indices.length).toBeGreaterThan(1);
    expect(p.preempt).toBeUndefined();
  });

  it('pauses background work while live work waits that the encoder cannot take, and preempts a background job for it', () => {
    const c = contentOf('c', 60);
    const d = contentOf('d', 60);
    // c: only 90p at the playhead (shard 80) is pending. d: past its start, background work.
    for (const s of c.map.shards) for (const [r, st] of Object.entries(s.renditions)) if (!(r === '90p' && s.index === 80)) st.status = 'ready';
    for (const s of d.map.shards) if (s.start < 10) for (const st of Object.values(s.renditions)) st.status = 'ready';
    const inp = input([c, d], { playheads: new Map([['c', [40]]]) });
    const list = candidates(inp);
    expect(list[0]).toMatchObject({ klass: 'live', rendition: '90p', index: 80 });
    expect(list.slice(1).every((x) => x.klass === 'background')).toBe(true);
    const aacOnly = { ...enc('aac'), engines: [{ name: 'x', codecs: ['aac'], speed: 1 }] };
    const p = plan(inp, list, [aacOnly], [{ jobId: 'bg', peerId: 'busy', progress: 0.1, assignedAt: 0, engines: H264 }]);
    expect(p.assignments).toEqual([]);
    expect(p.preempt).toMatchObject({ jobId: 'bg', peerId: 'busy', pick: { klass: 'live', index: 80 } });
  });

  it('reads no state beyond its input: the same input plans the same', () => {
    const inp = input([contentOf('c', 20)]);
    const a = plan(inp, candidates(inp), [enc('e', 2)], []);
    const b = plan(inp, candidates(inp), [enc('e', 2)], []);
    expect(a.assignments.map((x) => x.indices)).toEqual(b.assignments.map((x) => x.indices));
  });
});
