import { describe, expect, it } from 'vitest';
import type { ProbeFacts, VideoFacts } from '../../src/shared/media.ts';
import {
  AAC_PACKET_SAMPLES,
  buildShardMap,
  checkShardDuration,
  cutFrames,
  defaultLadder,
  effectiveVideoSpec,
  mapEnd,
  parseShardMap,
  ShardMapError,
  type Rendition,
} from '../../src/shared/shardMap.ts';

/** Frame times for `n` frames at num/den fps, computed the way a demuxer reports them (ticks / timescale). */
function cfrTimes(n: number, num: number, den: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * den) / num);
}

function videoFacts(times: number[], frameDur: number, over: Partial<VideoFacts> = {}): VideoFacts {
  return {
    codec: 'avc',
    width: 320,
    height: 180,
    fps: times.length / (times[times.length - 1]! + frameDur),
    frameTimes: times,
    lastFrameDuration: frameDur,
    keyframeTimes: [0],
    variableFrameRate: false,
    ...over,
  };
}

function facts(v?: VideoFacts, audio = true, duration?: number): ProbeFacts {
  const end = v ? v.frameTimes[v.frameTimes.length - 1]! + v.lastFrameDuration : 5;
  return {
    container: 'mp4',
    mimeType: 'video/mp4',
    duration: duration ?? end,
    timeOrigin: 0,
    size: 1000,
    ...(v && { video: v }),
    ...(audio && { audio: { codec: 'aac', sampleRate: 48000, channels: 2, start: 0, duration: duration ?? end } }),
  };
}

/** True when `t` is one of the frame timestamps exactly. */
const onFrame = (times: number[], t: number) => times.includes(t);

describe('shard duration', () => {
  it('defaults to 0.3 s and accepts 0.2 to 0.5', () => {
    expect(checkShardDuration(undefined)).toBe(0.3);
    expect(checkShardDuration(0.2)).toBe(0.2);
    expect(checkShardDuration('0.5')).toBe(0.5);
  });
  it.each([0.19, 0.51, 0, -1, NaN, Infinity, 'abc', '', null, {}])('rejects %s with a clear error', (d) => {
    expect(() => checkShardDuration(d)).toThrow(ShardMapError);
    expect(() => checkShardDuration(d)).toThrow(/0\.2 to 0\.5/);
  });
  it('buildShardMap refuses a bad duration', () => {
    const v = videoFacts(cfrTimes(30, 30, 1), 1 / 30);
    expect(() => buildShardMap({ contentId: 'x', facts: facts(v), shardDuration: 1 })).toThrow(/shard duration/);
  });
});

describe('frame-exact cutting', () => {
  it('29.97 fps: 9 frames per shard, starts on frame timestamps, last shard short', () => {
    const times = cfrTimes(300, 30000, 1001);
    const fd = 1001 / 30000;
    const map = buildShardMap({ contentId: 'c', facts: facts(videoFacts(times, fd)) });
    expect(map.shards).toHaveLength(Math.ceil(300 / 9));
    for (const s of map.shards.slice(0, -1)) {
      expect(s.frames).toBe(9);
      expect(onFrame(times, s.start)).toBe(true);
      expect(s.start).toBe(times[s.firstFrame]);
    }
    const last = map.shards[map.shards.length - 1]!;
    expect(last.frames).toBe(300 - 9 * (map.shards.length - 1));
    expect(last.duration).toBeCloseTo(last.frames * fd, 9);
    expect(map.shards.reduce((a, s) => a + s.frames, 0)).toBe(300);
    expect(mapEnd(map)).toBeCloseTo(300 * fd, 9);
  });

  it('23.976 fps: 7 frames per shard, whole frames only', () => {
    const times = cfrTimes(144, 24000, 1001);
    const map = buildShardMap({ contentId: 'c', facts: facts(videoFacts(times, 1001 / 24000), false) });
    for (const s of map.shards.slice(0, -1)) expect(s.frames).toBe(7);
    for (const s of map.shards) {
      expect(Number.isInteger(s.frames)).toBe(true);
      expect(onFrame(times, s.start)).toBe(true);
    }
    expect(map.shards.reduce((a, s) => a + s.frames, 0)).toBe(144);
  });

  it('variable frame rate: cuts follow the timestamps and stay contiguous', () => {
    // 2 s at 30 fps, then 2 s at 15 fps, then 1 s of irregular frames
    const times = [...cfrTimes(60, 30, 1), ...cfrTimes(30, 15, 1).map((t) => 2 + t)];
    let t = 4;
    for (const step of [0.05, 0.11, 0.02, 0.2, 0.07, 0.13, 0.09, 0.04, 0.15, 0.14]) times.push((t += step));
    const map = buildShardMap({ contentId: 'c', facts: facts(videoFacts(times, 0.04, { variableFrameRate: true }), false) });
    let frames = 0;
    map.shards.forEach((s, i) => {
      expect(onFrame(times, s.start)).toBe(true);
      expect(s.firstFrame).toBe(frames);
      frames += s.frames;
      const next = map.shards[i + 1];
      if (next) {
        expect(s.start + s.duration).toBeCloseTo(next.start, 12);
        // Each cut is the frame nearest to start + D, so no shard strays more than one frame interval from D.
        expect(Math.abs(s.duration - 0.3)).toBeLessThanOrEqual(0.2 + 1e-9);
      }
    });
    expect(frames).toBe(times.length);
    expect(map.shards.slice(0, 6).every((s) => s.frames === 9)).toBe(true); // the 30 fps part
    // In the 15 fps part a cut can only be half a frame interval (1/30 s) from the target.
    const slow = map.shards.filter((s) => s.start >= 2.1 && s.start + s.duration <= 3.9);
    expect(slow.length).toBeGreaterThan(2);
    for (const s of slow) expect(Math.abs(s.duration - 0.3)).toBeLessThanOrEqual(1 / 30 + 1e-9);
  });

  it('uses the given shard duration', () => {
    const times = cfrTimes(100, 25, 1);
    const map = buildShardMap({ contentId: 'c', facts: facts(videoFacts(times, 0.04), false), shardDuration: 0.45 });
    expect(map.shardDuration).toBe(0.45);
    expect(map.shards[0]!.frames).toBe(11); // 0.44 s is nearer to 0.45 than 0.48
    for (const s of map.shards.slice(0, -1)) expect(s.frames).toBe(11);
    expect(map.shards.reduce((a, s) => a + s.frames, 0)).toBe(100);
  });

  it('a single frame makes one shard', () => {
    expect(cutFrames([0], 0.04, 0.3)).toEqual([{ start: 0, duration: 0.04, frames: 1, firstFrame: 0 }]);
  });

  it('a video that starts late keeps its first frame time', () => {
    const times = cfrTimes(30, 30, 1).map((t) => t + 0.1);
    const map = buildShardMap({ contentId: 'c', facts: facts(videoFacts(times, 1 / 30), false) });
    expect(map.shards[0]!.start).toBeCloseTo(0.1, 12);
  });
});

describe('audio rendition', () => {
  it('is separate from video, shared by all video renditions, and cut on the AAC packet grid', () => {
    const times = cfrTimes(300, 30000, 1001);
    const map = buildShardMap({ contentId: 'c', facts: facts(videoFacts(times, 1001 / 30000), true, 10.01) });
    const audio = map.renditions.find((r) => r.id === 'audio')!;
    expect('audio' in audio && !('video' in audio)).toBe(true);
    let samples = 0;
    let expectStart = 0;
    for (const s of map.shards) {
      const a = s.renditions.audio!;
      expect(a.samples! % AAC_PACKET_SAMPLES).toBe(0);
      expect(a.start).toBeCloseTo(expectStart, 12); // contiguous, sample-exact
      // within half a packet of the video shard's start
      expect(Math.abs(a.start! - s.start)).toBeLessThanOrEqual(AAC_PACKET_SAMPLES / 48000 / 2 + 1e-9);
      samples += a.samples!;
      expectStart += a.samples! / 48000;
    }
    // covers the audio track, rounded up to a whole packet
    expect(samples).toBe(Math.ceil((10.01 * 48000) / 1024) * 1024);
  });

  it('audio-only sources get shards of whole packets', () => {
    const map = buildShardMap({ contentId: 'a', facts: facts(undefined, true, 5) });
    expect(map.renditions.map((r) => r.id)).toEqual(['audio']);
    expect(map.source.video).toBeUndefined();
    const per = Math.round((0.3 * 48000) / 1024); // 14 packets = 0.2987 s
    for (const s of map.shards.slice(0, -1)) {
      expect(s.frames).toBe(per);
      expect(s.renditions.audio!.samples).toBe(per * 1024);
      expect(s.duration).toBeCloseTo((per * 1024) / 48000, 12);
    }
    const totalPackets = Math.ceil((5 * 48000) / 1024);
    expect(map.shards.reduce((a, s) => a + s.frames, 0)).toBe(totalPackets);
  });

  it('video-only sources have no audio rendition', () => {
    const map = buildShardMap({ contentId: 'v', facts: facts(videoFacts(cfrTimes(60, 30, 1), 1 / 30), false) });
    expect(map.renditions.some((r) => 'audio' in r)).toBe(false);
    expect(map.shards.every((s) => !('audio' in s.renditions))).toBe(true);
  });

  it('shorter audio leaves the last shards without audio', () => {
    const v = videoFacts(cfrTimes(90, 30, 1), 1 / 30);
    const f = facts(v, true);
    f.audio!.duration = 1.5;
    const map = buildShardMap({ contentId: 'v', facts: f });
    const withAudio = map.shards.filter((s) => s.renditions.audio);
    expect(withAudio.length).toBeGreaterThan(3);
    expect(withAudio.length).toBeLessThan(map.shards.length);
    expect(map.shards[map.shards.length - 1]!.renditions.audio).toBeUndefined();
  });
});

describe('ladder', () => {
  it('caps at 720p, adds a low rung at a quarter of the bitrate, keeps aspect and even sizes', () => {
    const l = defaultLadder({ video: videoFacts([0], 1 / 30, { width: 1920, height: 1080, fps: 30 }) });
    const [top, low] = l as [Extract<Rendition, { video: unknown }>, Extract<Rendition, { video: unknown }>];
    expect(top.id).toBe('720p');
    expect(top.video).toMatchObject({ width: 1280, height: 720, codec: 'h264' });
    expect(low.video).toMatchObject({ width: 640, height: 360 });
    expect(low.video.bitrate / top.video.bitrate).toBeCloseTo(0.25, 2);
  });
  it('does not upscale small sources', () => {
    const l = defaultLadder({ video: videoFacts([0], 1 / 30, { width: 320, height: 180, fps: 30 }) });
    expect(l.map((r) => r.id)).toEqual(['180p', '90p']);
  });
  it('odd source sizes give even rendition sizes', () => {
    const l = defaultLadder({ video: videoFacts([0], 1 / 30, { width: 853, height: 481, fps: 30 }) });
    for (const r of l) if ('video' in r) expect((r.video.width % 2) + (r.video.height % 2)).toBe(0);
  });
  it('audio: stereo at 128 kb/s keeping 44.1 kHz, mono at 64 kb/s', () => {
    expect(defaultLadder({ audio: { codec: 'mp3', sampleRate: 44100, channels: 6, start: 0, duration: 1 } })).toEqual([
      { id: 'audio', audio: { codec: 'aac', bitrate: 128000, sampleRate: 44100, channels: 2 } },
    ]);
    expect(defaultLadder({ audio: { codec: 'opus', sampleRate: 22050, channels: 1, start: 0, duration: 1 } })[0]).toMatchObject({
      audio: { sampleRate: 48000, channels: 1, bitrate: 64000 },
    });
  });
  it('rejects a ladder that does not fit the source', () => {
    const v = videoFacts(cfrTimes(30, 30, 1), 1 / 30);
    expect(() =>
      buildShardMap({
        contentId: 'x',
        facts: facts(v, false),
        renditions: [{ id: 'audio', audio: { codec: 'aac', bitrate: 64000, sampleRate: 48000, channels: 1 } }],
      }),
    ).toThrow(/no audio track/);
    expect(() => buildShardMap({ contentId: 'x', facts: { ...facts(v), video: undefined, audio: undefined } })).toThrow(ShardMapError);
  });
});

describe('schema', () => {
  const base = () => buildShardMap({ contentId: 'c', facts: facts(videoFacts(cfrTimes(60, 30, 1), 1 / 30)) });

  it('round-trips through JSON', () => {
    const m = base();
    expect(parseShardMap(JSON.parse(JSON.stringify(m)))).toEqual(m);
  });

  it('accepts per-shard overrides of codec, bitrate, resolution and priority', () => {
    const m = base();
    m.shards[1]!.overrides = { '180p': { bitrate: 900_000, width: 640, height: 360, codec: 'vp9' } };
    m.shards[1]!.priority = 10;
    const parsed = parseShardMap(m);
    expect(effectiveVideoSpec(parsed, parsed.shards[1]!, '180p')).toEqual({ codec: 'vp9', width: 640, height: 360, bitrate: 900_000 });
    expect(effectiveVideoSpec(parsed, parsed.shards[0]!, '180p').codec).toBe('h264');
  });

  it.each([
    ['a wrong version', (m: any) => (m.version = 2), /version/],
    ['an unknown rendition in a shard', (m: any) => (m.shards[0].renditions.zzz = { status: 'pending' }), /unknown rendition "zzz"/],
    ['overlapping shards', (m: any) => (m.shards[1].start = 0.1), /overlaps/],
    ['an out-of-order index', (m: any) => (m.shards[1].index = 5), /has index 5/],
    ['a bad hash', (m: any) => (m.shards[0].renditions['180p'] = { status: 'ready', sha256: 'xyz' }), /sha256/],
    ['an odd width', (m: any) => (m.renditions[0].video.width = 321), /even/],
    ['an unknown override', (m: any) => (m.shards[0].overrides = { zzz: { bitrate: 1e6 } }), /overrides unknown/],
    ['a bad shard duration', (m: any) => (m.shardDuration = 0.7), /shardDuration/],
    ['a duplicate rendition', (m: any) => m.renditions.push(m.renditions[0]), /duplicate rendition/],
    ['no shards', (m: any) => (m.shards = []), /shards/],
  ])('rejects %s with a message naming the problem', (_name, mutate, msg) => {
    const m = base();
    mutate(m);
    expect(() => parseShardMap(m)).toThrow(msg);
  });
});
