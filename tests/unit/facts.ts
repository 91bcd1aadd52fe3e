/** Probe facts of a made-up source for unit tests: constant-rate H.264 video with one key frame, and AAC audio. */
import type { ProbeFacts } from '../../src/shared/media.ts';

export function avFacts(seconds: number, o: { fps?: number; width?: number; height?: number; frames?: number } = {}): ProbeFacts {
  const fps = o.fps ?? 30;
  const n = o.frames ?? Math.round(seconds * fps);
  return {
    container: 'mp4',
    mimeType: 'video/mp4',
    duration: seconds,
    timeOrigin: 0,
    size: 1,
    video: {
      codec: 'avc',
      width: o.width ?? 320,
      height: o.height ?? 180,
      fps,
      frameTimes: Array.from({ length: n }, (_, i) => i / fps),
      lastFrameDuration: 1 / fps,
      keyframeTimes: [0],
      variableFrameRate: false,
    },
    audio: { codec: 'aac', sampleRate: 48000, channels: 2, start: 0, duration: seconds },
  };
}
