import { describe, expect, it } from 'vitest';
import { AUDIO_RUN_OVERLAP, buildJob, runIndices } from '../../../signaling/pool/JobBuilder.ts';
import { contentOf } from './fixtures.ts';

const config = { jobSeconds: 4, jobMaxSeconds: 6, audioJobSeconds: 30, jobDeadlineMinMs: 10_000, jobDeadlineMsPerSecond: 2000 };

describe('JobBuilder (pure)', () => {
  it('takes a run of free shards of the same retry class', () => {
    const c = contentOf('c', 20);
    const run = runIndices(
      c,
      '180p',
      0,
      () => true,
      () => false,
      config,
    );
    expect(run.length).toBeGreaterThan(1);
    expect(run).toEqual(run.map((_, i) => i));
    // A retry starts a run of retries only.
    expect(
      runIndices(
        c,
        '180p',
        3,
        () => true,
        (i) => i === 3,
        config,
      ),
    ).toEqual([3]);
    expect(
      runIndices(
        c,
        '180p',
        3,
        (i) => i !== 4,
        () => false,
        config,
      ),
    ).toEqual([3]);
  });

  it('builds the job message: times, slice URL, deadline from the given clock, token only when uploads are checked', () => {
    const c = contentOf('c', 20);
    const job = buildJob(c, '180p', [2, 3], { id: 'j', uploadToken: 't', now: 1000 }, config);
    expect(job).toMatchObject({
      id: 'j',
      contentId: 'c',
      rendition: '180p',
      kind: 'video',
      start: 1,
      end: 2,
      deadline: 1000 + 10_000,
      upload: true,
      uploadToken: 't',
    });
    expect(job.sourceUrl).toBe('/api/contents/c/source?start=1.000000&end=2.000000&tracks=video');
    const plain = buildJob(c, '180p', [2], { id: 'j', now: 0 }, config);
    expect(plain.upload).toBe(false);
    expect('uploadToken' in plain).toBe(false);
  });

  it('gives an audio run that meets another run ~100 ms of overlap on that side', () => {
    const c = contentOf('c', 20);
    const job = buildJob(c, 'audio', [3, 4], { id: 'j', now: 0 }, config);
    const packet = 1024 / 48000;
    expect(job.leadPackets).toBe(Math.ceil(AUDIO_RUN_OVERLAP / packet));
    expect(job.tailPackets).toBe(Math.ceil(AUDIO_RUN_OVERLAP / packet));
    expect(buildJob(c, 'audio', [0], { id: 'j', now: 0 }, config).leadPackets).toBe(0);
  });
});
