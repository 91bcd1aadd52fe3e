import { describe, expect, it } from 'vitest';
import { buildShardMap } from '../../src/shared/shardMap.ts';
import { planRun } from '../../signaling/jobs.ts';
import { avFacts } from './facts.ts';

const opts = { jobSeconds: 3, jobMaxSeconds: 5, audioJobSeconds: 30 };

function mapOf(seconds: number, fps = 30) {
  return buildShardMap({ contentId: 'c', facts: avFacts(seconds, { fps }) });
}

const all = () => true;
const span = (map: ReturnType<typeof mapOf>, idx: number[]) => idx.reduce((a, i) => a + map.shards[i]!.duration, 0);

describe('planRun', () => {
  it('makes video jobs of about jobSeconds of consecutive shards', () => {
    const map = mapOf(20);
    const run = planRun(map, '180p', 0, all, [0], opts);
    expect(run).toEqual(run.map((_, i) => i));
    expect(span(map, run)).toBeGreaterThanOrEqual(3 - 1e-9);
    expect(span(map, run)).toBeLessThan(3.3);
  });

  it('ends a job at a source key frame when one falls in range', () => {
    const map = mapOf(20);
    const run = planRun(map, '180p', 0, all, [0, 2.4, 10], opts);
    expect(map.shards[run[run.length - 1]! + 1]!.start).toBeCloseTo(2.4, 9);
  });

  it('never crosses a shard that is not available', () => {
    const map = mapOf(20);
    const run = planRun(map, '180p', 2, (i) => i !== 5, [0], opts);
    expect(run).toEqual([2, 3, 4]);
  });

  it('stops at the end of the content', () => {
    const map = mapOf(1);
    expect(planRun(map, '180p', 0, all, [0], opts)).toEqual([0, 1, 2, 3]);
  });

  it('audio: one job for a short content, 30 s runs for a long one', () => {
    const short = mapOf(20);
    expect(planRun(short, 'audio', 0, all, [], opts)).toHaveLength(short.shards.length);
    const long = mapOf(100, 10);
    const run = planRun(long, 'audio', 0, all, [], opts);
    expect(span(long, run)).toBeGreaterThanOrEqual(30 - 1e-9);
    expect(span(long, run)).toBeLessThan(30.5);
  });
});
