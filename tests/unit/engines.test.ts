import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Job } from '../../src/shared/protocol.ts';
import { webCodecsH264BitrateScale } from '../../src/encoder/config.ts';
import { FFMPEG_CORE_BUILD, FFMPEG_CORE_MT_BUILD } from '../../src/encoder/FfmpegEngine.ts';
import { engineFor } from '../../src/encoder/JobRunner.ts';
import { h264Level, webCodecsCodecString } from '../../src/encoder/WebCodecsEngine.ts';

const job = (over: Partial<Job>): Job => ({
  id: 'j1',
  contentId: 'c1',
  rendition: '360p',
  kind: 'video',
  video: { codec: 'h264', width: 640, height: 360, bitrate: 800_000 },
  shards: [{ index: 0, start: 0, duration: 0.3, frames: 9, firstFrame: 0 }],
  sourceUrl: '/x',
  start: 0,
  end: 0.3,
  deadline: 0,
  upload: false,
  ...over,
});

describe('encoder engines', () => {
  it('names the ffmpeg core build that is installed', () => {
    const pkg = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '../../node_modules/@ffmpeg/core/package.json'), 'utf8'));
    expect(FFMPEG_CORE_BUILD).toBe(`core-${pkg.version}-st`);
    const mt = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '../../node_modules/@ffmpeg/core-mt/package.json'), 'utf8'));
    expect(FFMPEG_CORE_MT_BUILD).toBe(`core-mt-${mt.version}-mt`);
  });

  it('asks WebCodecs for High profile H.264 at the level the size needs', () => {
    expect(webCodecsCodecString({ codec: 'h264', width: 640, height: 360 })).toBe('avc1.64001f');
    expect(webCodecsCodecString({ codec: 'h264', width: 1280, height: 720 })).toBe('avc1.64001f');
    expect(webCodecsCodecString({ codec: 'h264', width: 1920, height: 1080 })).toBe('avc1.640028');
    expect(h264Level(3840, 2160)).toBe(0x33);
    expect(webCodecsCodecString({ codec: 'vp9', width: 640, height: 360 })).toBe('vp09.00.40.08');
  });

  it('gives WebCodecs H.264 the measured bitrate factor for the rendition height, unless overridden', () => {
    expect(webCodecsH264BitrateScale(360)).toBe(1.6);
    expect(webCodecsH264BitrateScale(720)).toBe(1.35);
    expect(webCodecsH264BitrateScale(2160)).toBe(1.35);
    expect(webCodecsH264BitrateScale(360, 2)).toBe(2);
  });

  it('runs H.264 on WebCodecs only when the pool chose it and the tab has it; audio always on ffmpeg.wasm', () => {
    expect(engineFor(job({ engine: 'webcodecs' }), ['h264', 'vp9'])).toBe('webcodecs');
    expect(engineFor(job({ engine: 'webcodecs' }), ['vp9'])).toBe('ffmpeg-wasm');
    expect(engineFor(job({ engine: 'ffmpeg-wasm' }), ['h264'])).toBe('ffmpeg-wasm');
    expect(engineFor(job({}), ['h264'])).toBe('ffmpeg-wasm');
    expect(engineFor(job({ video: { codec: 'vp9', width: 320, height: 180, bitrate: 200_000 } }), ['vp9'])).toBe('webcodecs');
    const { video: _v, ...audioJob } = job({ kind: 'audio', engine: 'webcodecs' });
    expect(engineFor({ ...audioJob, audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } }, ['h264'])).toBe('ffmpeg-wasm');
  });
});
