/**
 * What a probe of a source file tells us. Produced on the server by the demuxer
 * (signaling/media/probe.ts) and consumed by the pure ShardMap builder, which is
 * why it lives in shared code and holds plain data only.
 *
 * All times are in seconds on the *content* timeline: 0 is the smallest start
 * timestamp over the source's tracks (`timeOrigin` on the source timeline).
 */

export interface VideoFacts {
  /** Mediabunny codec name, e.g. "avc", "hevc", "vp9", "av1". */
  codec: string;
  width: number;
  height: number;
  /** Average frame rate (frames / span). Informational; shard cutting uses `frameTimes`. */
  fps: number;
  /** Presentation timestamps of every frame, ascending, content timeline. */
  frameTimes: number[];
  /** Duration of the last frame, so the stream's end is known exactly. */
  lastFrameDuration: number;
  /** Presentation timestamps of key frames, ascending, content timeline. */
  keyframeTimes: number[];
  /** True when frame intervals differ by more than a tolerance (variable frame rate). */
  variableFrameRate: boolean;
  /** Average bitrate of the source track in bits/s, when known. */
  bitrate?: number;
  /**
   * Clockwise rotation (degrees) a player applies for display, from the track's
   * display matrix (phones write 90/270). `width`/`height` are already the
   * displayed (rotated) size; encoders rotate the pixels by this. Absent: 0.
   */
  rotation?: VideoRotation;
}

/** Clockwise display rotation in degrees (mediabunny's convention; ffprobe's `rotation` is the anticlockwise angle). */
export type VideoRotation = 0 | 90 | 180 | 270;

export interface AudioFacts {
  /** Mediabunny codec name, e.g. "aac", "opus", "mp3", "pcm-s16". */
  codec: string;
  sampleRate: number;
  channels: number;
  /** Start of the first audio sample, content timeline. */
  start: number;
  /** Duration of the audio track in seconds. */
  duration: number;
}

export interface ProbeFacts {
  /** Container name as reported by the demuxer, e.g. "mp4", "webm", "matroska". */
  container: string;
  /** MIME type of the source including codecs, for information. */
  mimeType: string;
  /** Content duration in seconds (largest end over all tracks). */
  duration: number;
  /** Source-timeline timestamp that content time 0 maps to. */
  timeOrigin: number;
  /** Size of the source file in bytes. */
  size: number;
  video?: VideoFacts;
  audio?: AudioFacts;
}
