/**
 * The encoder tab's config: one zod schema holds every tunable with its
 * default and description (src/shared/configSchema.ts). A page can override
 * any of them with a query parameter of the same name
 * (`/encode?recycleAfterExecs=5&watchdogMs=10000`), which the tests use.
 */
import { z } from 'zod';
import { ConfigSchema } from '../shared/configSchema.ts';

const num = (def: number, description: string) => z.number().default(def).describe(description);
const bool = (def: boolean, description: string) => z.boolean().default(def).describe(description);

const encoderConfigSchema = z.object({
  // A loaded core crashes with "memory access out of bounds" after roughly 45-100 execs here (DESIGN.md), so recycle well before.
  recycleAfterExecs: num(20, 'Terminate and reload the ffmpeg core after this many execs.'),
  watchdogMs: num(20_000, 'An exec with no progress or log output for this long is killed and its job failed, ms.'),
  preset: z.string().default('veryfast').describe('libx264 preset for video jobs.'),
  // See tests/bench (a/d) for what the multi-thread core gains here.
  ffmpegCore: z
    .enum(['single', 'multi'])
    .default('single')
    .describe(
      "Which ffmpeg.wasm core runs jobs: 'single', or 'multi', the multi-thread core with `-threads 2`, used only when the page is cross-origin isolated and dropped for the single-thread core on its first crash or stall.",
    ),
  storeBudgetBytes: num(256 * 2 ** 20, 'Bytes of shards kept in memory (and IndexedDB); least recently served go first.'),
  maxConcurrentServes: num(4, 'Shard transfers served at once, over all peers.'),
  maxPeers: num(16, 'Peers connected at once; the least recently used is closed past this.'),
  persist: bool(true, 'Persist shards to IndexedDB so a reload keeps serving them.'),
  benchmark: bool(true, 'Run the join benchmark (a short encode) before asking for work.'),
  mezzaninePollMs: num(5000, 'How often an idle tab asks the server for a mezzanine job (a source with a track only ffmpeg.wasm decodes), ms; 0: never.'),
  reconnectMs: num(1000, 'Delay between reconnect attempts to the pool, ms.'),
  replicateTimeoutMs: num(10_000, 'Give up copying a shard from one holder after this long, ms.'),
  engines: z
    .string()
    .default('ffmpeg-wasm,webcodecs')
    .describe(
      'Engines this tab offers the pool, comma-separated: "ffmpeg-wasm" (always on: audio and the fallback need it) and "webcodecs" (when the browser has it and its benchmark passes).',
    ),
  webcodecsH264BitrateScale: num(
    0,
    "WebCodecs H.264 (OpenH264) gets this times the rendition's bitrate. 0: by rendition height from WEBCODECS_H264_BITRATE_SCALES, so it reaches the PSNR libx264 veryfast reaches at the rendition's bitrate.",
  ),
  // Rather than failing over mid-job each time, every H.264 job then runs on ffmpeg.wasm at once.
  webcodecsMaxFailures: num(3, 'After this many WebCodecs H.264 failures in a row the tab stops using WebCodecs for H.264.'),
  testHooks: z
    .object({
      failEngine: z
        .string()
        .default('')
        .describe(
          'An engine whose jobs fail after failAfterFrames frames, as a broken encoder would: "webcodecs" exercises the fallback to ffmpeg.wasm; "ffmpeg-multi" kills the multi-thread core mid-job, as its crashes do, to exercise the fallback to the single-thread core (`/encode?ffmpegCore=multi&failEngine=ffmpeg-multi`). Empty: no failure.',
        ),
      failAfterFrames: num(10, 'Frames after which failEngine fails a job.'),
    })
    .prefault({})
    .describe('Test hooks: exercise the fallback to ffmpeg.wasm (`/encode?failEngine=webcodecs&failAfterFrames=10`)'),
});

export type EncoderConfig = z.output<typeof encoderConfigSchema>;

export const ENCODER_CONFIG = new ConfigSchema(encoderConfigSchema);

/**
 * Bitrate factor for WebCodecs H.264 (Chromium 150's OpenH264; no quantizer
 * mode for H.264 here) per rendition height, so its PSNR comes within 0.5 dB
 * of libx264 veryfast (ffmpeg.wasm) at the rendition's bitrate.
 *
 * Measured with `BENCH_WC_SCALES=1.5,2,2.5 npm run bench -- --only webcodecs
 * --runs 1` and the plain bench (scale 1), on the 20 s 720p testsrc2 clip
 * (fixture bench-720p), PSNR against the source by native ffmpeg, default
 * ladder bitrates (553 kb/s at 360p, 2212 kb/s at 720p):
 *
 * | rung | x264 (ffmpeg.wasm) | WebCodecs x1 | x1.5 | x2 | x2.5 |
 * | 640x360 | 42.0 dB | 40.1 | 41.4 | 42.2 | 42.8 |
 * | 1280x720 | 41.8 dB | 39.9 | 42.6 | 45.6 | 48.0 |
 *
 * OpenH264 follows the bitrate it is given (x1: 0.98-1.1x the bytes of x264),
 * so equal PSNR costs bytes: about 1.6x at 360p and 1.35x at 720p. Synthetic
 * content; re-measure on real footage before trusting the exact figures.
 */
export const WEBCODECS_H264_BITRATE_SCALES: readonly { maxHeight: number; scale: number }[] = [
  { maxHeight: 480, scale: 1.6 },
  { maxHeight: Infinity, scale: 1.35 },
];

/** The bitrate factor for WebCodecs H.264 at a rendition height: the override when set, else the table. */
export function webCodecsH264BitrateScale(height: number, override = 0): number {
  if (override > 0) return override;
  return WEBCODECS_H264_BITRATE_SCALES.find((r) => height <= r.maxHeight)!.scale;
}

export const DEFAULT_ENCODER_CONFIG: EncoderConfig = ENCODER_CONFIG.defaults();

/** `base` with the overrides of a query string; unknown parameters are skipped, malformed values ignored with a console warning. */
export function encoderConfigFrom(search: string, base: EncoderConfig = DEFAULT_ENCODER_CONFIG): EncoderConfig {
  return ENCODER_CONFIG.apply(
    base,
    ENCODER_CONFIG.fromQuery(new URLSearchParams(search), (m) => console.warn(m)),
  );
}
