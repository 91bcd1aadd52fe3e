/**
 * What this tab offers the pool: its engines (ffmpeg.wasm always, WebCodecs
 * for the codecs the browser encodes), each one's build and join-benchmark
 * speed, and the policy that takes WebCodecs H.264 out of the offer after
 * `webcodecsMaxFailures` fallbacks in a row. The Encoder reads the offer for
 * its `capabilities` and its page state; jobs read it for their engine.
 */
import { TypedEmitter } from '../shared/events.ts';
import type { VideoSpec } from '../shared/shardMap.ts';
import { webCodecsH264BitrateScale, type EncoderConfig } from './config.ts';
import { FFMPEG_CORE_BUILD, FFMPEG_CORE_MT_BUILD, type FfmpegCoreKind, type FfmpegEngine } from './FfmpegEngine.ts';
import type { EngineName, WebCodecsOffer } from './JobRunner.ts';
import { benchmarkWebCodecs, webCodecsBuild, webCodecsCodecs } from './WebCodecsEngine.ts';

/** One engine as the join benchmark found it. */
export interface EngineReport {
  name: EngineName;
  /** "name@build", the value shard-ready carries for shards this engine made. */
  build: string;
  codecs: string[];
  /** Seconds of 320x180 output per wall second in the join benchmark. */
  speed: number | undefined;
  fps: number | undefined;
}

export interface EngineOfferEvents {
  /** A line for the page's log. */
  log: { line: string };
}

export class EngineOffer extends TypedEmitter<EngineOfferEvents> {
  /** ffmpeg.wasm's join benchmark: seconds of 320x180 output per wall second, and frames per second. */
  ffmpegSpeed: { speed: number; fps: number } | undefined;
  /** Every engine offered, with its benchmark (ffmpeg.wasm first); empty until `reports` is first built. */
  reports: EngineReport[] = [];
  /** Video codecs this browser encodes with WebCodecs (empty when it has none, or its benchmark failed). */
  private webCodecs: VideoSpec['codec'][] = [];
  private webCodecsBuild = 'unknown';
  private webCodecsSpeed: { speed: number; fps: number } | undefined;
  private webCodecsFailuresInARow = 0;

  constructor(
    private readonly engine: FfmpegEngine,
    private readonly config: EncoderConfig,
  ) {
    super();
  }

  /** Finds which codecs WebCodecs encodes here, when `config.engines` offers it. */
  async detect(): Promise<void> {
    const offered = this.config.engines.split(',').map((x) => x.trim());
    this.webCodecs = offered.includes('webcodecs') ? await webCodecsCodecs() : [];
    if (this.webCodecs.length) {
      this.webCodecsBuild = await webCodecsBuild();
      this.log(`WebCodecs encodes ${this.webCodecs.join(', ')} (${this.webCodecsBuild})`);
    }
  }

  /**
   * Short 180p encodes with each engine: they warm ffmpeg.wasm up (the first
   * exec is ~2x slower), measure each engine's speed for the pool, and take a
   * WebCodecs that fails out of the offer. Throws when ffmpeg.wasm fails.
   */
  async benchmark(): Promise<void> {
    await this.benchmarkFfmpeg();
    if (!this.webCodecs.length) return;
    // H.264 when the browser has it (the fast path for the default ladder), else the codec it has.
    const codec = this.webCodecs.includes('h264') ? 'h264' : this.webCodecs[0]!;
    try {
      this.webCodecsSpeed = await benchmarkWebCodecs(codec);
      this.log(`benchmark: WebCodecs ${codec} ${this.webCodecsSpeed.fps.toFixed(0)} fps at 320x180 (${this.webCodecsSpeed.speed.toFixed(1)}x real time)`);
    } catch (e) {
      this.log(`WebCodecs failed its benchmark, not offered: ${(e as Error).message}`);
      this.webCodecs = [];
    }
  }

  private async benchmarkFfmpeg(): Promise<void> {
    const seconds = 2;
    const r = await this.engine.exec(
      () => [
        '-nostdin',
        '-f',
        'lavfi',
        '-i',
        `testsrc2=size=320x180:rate=30:duration=${seconds}`,
        '-c:v',
        'libx264',
        '-preset',
        this.config.preset,
        '-bf',
        '0',
        ...(this.engine.threads ? ['-threads', String(this.engine.threads)] : []),
        '-f',
        'null',
        '-',
      ],
      {},
    );
    this.ffmpegSpeed = { speed: seconds / (r.execMs / 1000), fps: (seconds * 30) / (r.execMs / 1000) };
    this.log(`benchmark: ffmpeg.wasm ${this.ffmpegSpeed.fps.toFixed(0)} fps at 320x180 (${this.ffmpegSpeed.speed.toFixed(1)}x real time)`);
  }

  /** Builds `reports` from what detect() and benchmark() found. */
  settle(): EngineReport[] {
    this.reports = [
      { name: 'ffmpeg-wasm', build: this.buildOf('ffmpeg-wasm'), codecs: ['h264', 'aac'], speed: this.ffmpegSpeed?.speed, fps: this.ffmpegSpeed?.fps },
      ...(this.webCodecs.length
        ? [
            {
              name: 'webcodecs' as const,
              build: this.buildOf('webcodecs'),
              codecs: [...this.webCodecs],
              speed: this.webCodecsSpeed?.speed,
              fps: this.webCodecsSpeed?.fps,
            },
          ]
        : []),
    ];
    return this.reports;
  }

  /**
   * "name@build" for shard-ready: the ffmpeg core build (single- or
   * multi-thread, default the one running now) and the preset (both change
   * the bytes), or the browser build.
   */
  buildOf(engine: EngineName, core: FfmpegCoreKind = this.engine.kind): string {
    return engine === 'ffmpeg-wasm'
      ? `ffmpeg-wasm@${core === 'multi' ? FFMPEG_CORE_MT_BUILD : FFMPEG_CORE_BUILD}/${this.config.preset}`
      : `webcodecs@${this.webCodecsBuild}`;
  }

  /** The multi-thread core fell back to the single-thread one: ffmpeg.wasm's report carries the build now running. */
  coreChanged(): void {
    this.reports = this.reports.map((e) => (e.name === 'ffmpeg-wasm' ? { ...e, build: this.buildOf('ffmpeg-wasm') } : e));
  }

  /** How a job may use WebCodecs now. */
  jobOffer(): WebCodecsOffer {
    return {
      codecs: this.webCodecs,
      h264BitrateScale: (height) => webCodecsH264BitrateScale(height, this.config.webcodecsH264BitrateScale),
      ...(this.config.testHooks.failEngine === 'webcodecs' && { failAfterFrames: this.config.testHooks.failAfterFrames }),
    };
  }

  /**
   * Records how a job went: `fallback` says why WebCodecs failed and
   * ffmpeg.wasm finished it. Returns true when that takes WebCodecs H.264 out
   * of the offer (the pool must be told, or it keeps naming WebCodecs for
   * H.264 jobs and schedules by a speed the tab no longer has).
   */
  afterJob(engine: EngineName, fallback: string | undefined): boolean {
    if (!fallback) {
      if (engine === 'webcodecs') this.webCodecsFailuresInARow = 0;
      return false;
    }
    this.webCodecsFailuresInARow++;
    if (this.webCodecsFailuresInARow < this.config.webcodecsMaxFailures || !this.webCodecs.includes('h264')) return false;
    this.webCodecs = this.webCodecs.filter((c) => c !== 'h264');
    this.log(`WebCodecs H.264 failed ${this.webCodecsFailuresInARow} jobs in a row: H.264 stays on ffmpeg.wasm in this tab`);
    this.reports = this.reports
      .map((e) => (e.name === 'webcodecs' ? { ...e, codecs: e.codecs.filter((c) => c !== 'h264') } : e))
      .filter((e) => e.codecs.length > 0);
    return true;
  }

  private log(line: string): void {
    this.emit('log', { line });
  }
}
