import { describe, expect, it } from 'vitest';
import { audioJobArgs, shardBoundaryFrames, videoJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import type { Job } from '../../src/shared/protocol.ts';

const fd = 1001 / 30000;
const shards = Array.from({ length: 10 }, (_, i) => ({ index: 10 + i, start: (10 + i) * 9 * fd, duration: 9 * fd, frames: 9, firstFrame: (10 + i) * 9 }));
const job: Job = {
  id: 'j1',
  contentId: 'c',
  rendition: '180p',
  kind: 'video',
  video: { codec: 'h264', width: 320, height: 180, bitrate: 300_000 },
  shards,
  sourceUrl: '/x',
  start: shards[0]!.start,
  end: shards[9]!.start + shards[9]!.duration,
  deadline: 0,
  upload: false,
};
const flag = (args: string[], f: string) => args[args.indexOf(f) + 1];

describe('video job command line', () => {
  const args = videoJobArgs(job, 0, 'in.mp4', { preset: 'veryfast' });

  it('seeks to the job start within the slice and encodes exactly the job frames', () => {
    // no input seek; a trim half a frame early, so rounding can never drop the job's first frame
    expect(args).not.toContain('-ss');
    const trimAt = (a: string[]) => Number(/^trim=start=([\d.]+),setpts=PTS-STARTPTS,/.exec(flag(a, '-vf')!)?.[1]);
    expect(trimAt(args)).toBeCloseTo(3.003 - fd / 2, 5);
    expect(flag(args, '-frames:v')).toBe('90');
    expect(trimAt(videoJobArgs(job, 2.5, 'in.mp4', { preset: 'veryfast' }))).toBeCloseTo(0.503 - fd / 2, 5);
    expect(flag(videoJobArgs({ ...job, start: 0.01 }, 0, 'in.mp4', { preset: 'veryfast' }), '-vf')).toMatch(/^scale=/);
  });

  it('forces a key frame at every shard boundary and cuts segments there, by frame number', () => {
    expect(shardBoundaryFrames(job)).toEqual([9, 18, 27, 36, 45, 54, 63, 72, 81]);
    expect(flag(args, '-force_key_frames')).toBe('expr:eq(n,9)+eq(n,18)+eq(n,27)+eq(n,36)+eq(n,45)+eq(n,54)+eq(n,63)+eq(n,72)+eq(n,81)');
    expect(flag(args, '-segment_frames')).toBe('9,18,27,36,45,54,63,72,81');
    expect(flag(args, '-segment_format_options')).toBe('movflags=frag_keyframe+empty_moov+default_base_moof');
  });

  it('follows uneven shard lengths', () => {
    const uneven = { ...job, shards: [shards[0]!, { ...shards[1]!, frames: 8 }, { ...shards[2]!, frames: 10 }] };
    expect(shardBoundaryFrames(uneven)).toEqual([9, 17]);
  });

  it('uses the rendition parameters, no B-frames, and keeps source timestamps', () => {
    expect(flag(args, '-c:v')).toBe('libx264');
    expect(flag(args, '-bf')).toBe('0');
    expect(flag(args, '-b:v')).toBe('300000');
    expect(flag(args, '-vf')).toMatch(/scale=320:180/);
    expect(flag(args, '-fps_mode')).toBe('passthrough');
    expect(args).not.toContain('-threads');
    expect(flag(videoJobArgs(job, 0, 'in.mp4', { preset: 'ultrafast', threads: 2 }), '-threads')).toBe('2');
  });

  it('a one-shard job has no cuts', () => {
    const one = { ...job, shards: [shards[0]!], end: shards[0]!.start + shards[0]!.duration };
    expect(shardBoundaryFrames(one)).toEqual([]);
    expect(videoJobArgs(one, 0, 'in.mp4', { preset: 'veryfast' })).not.toContain('-force_key_frames');
  });

  it('refuses a job without video parameters', () => {
    expect(() => videoJobArgs({ ...job, video: undefined }, 0, 'in', { preset: 'veryfast' })).toThrow(/no video/);
  });
});

describe('audio job command line', () => {
  it('encodes the whole run to exactly the map sample count, resampling first', () => {
    const a: Job = {
      ...job,
      kind: 'audio',
      rendition: 'audio',
      video: undefined,
      audio: { codec: 'aac', bitrate: 128000, sampleRate: 48000, channels: 2 },
      shards: [
        { index: 0, start: 0, duration: 14336 / 48000, frames: 9, firstFrame: 0, samples: 14336 },
        { index: 1, start: 14336 / 48000, duration: 14336 / 48000, frames: 9, firstFrame: 9, samples: 14336 },
      ],
      start: 0,
    };
    const args = audioJobArgs(a, 0, 'in.mp4', 'out.mp4');
    expect(flag(args, '-af')).toBe('aresample=48000,apad=whole_len=28672,atrim=end_sample=28672');
    expect(flag(args, '-c:a')).toBe('aac');
    // constant quality, so separately encoded runs agree where they meet (a constant bitrate clicks there)
    expect(flag(args, '-q:a')).toBe('1.00');
    expect(args).not.toContain('-b:a');
    expect(args[args.length - 1]).toBe('out.mp4');
  });
});
