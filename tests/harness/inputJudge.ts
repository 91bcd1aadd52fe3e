/**
 * The judge of the input suite: native ffmpeg/ffprobe decode the source as a
 * player shows it (edit lists applied, display matrix and pixel aspect honoured,
 * the earliest stream start taken as 0) and the export the product made, and
 * compare them by the issue-17 criteria. Every criterion's limit is a named
 * constant below; `judge` returns the facts and the list of criteria failed.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ffprobeJson } from './fixtures.ts';
import { pcm } from './referee.ts';

const run = promisify(execFile);

/** Limits (issue 17, Deliver). */
export const LIMITS = {
  /** Frames shown, export vs source. */
  frameCount: 1,
  /** A frame's PSNR may be at most this far (dB) below the median of its neighbours'. */
  psnrDropDb: 6,
  /** Neighbours on each side for that median. */
  psnrNeighbours: 4,
  /** Mean PSNR floor (dB): a squeezed or unrotated picture scores ~9 dB, every frame one late ~25 dB, an honest 320x180 encode 29-36. */
  psnrMeanDb: 27,
  /** Each frame's presentation time, as a share of the source's median frame interval. */
  ptsShareOfFrame: 0.5,
  /** First video frame minus the sound (by cross-correlation), export vs source, seconds. */
  avOffsetSeconds: 0.01,
  /** Decoded audio length, relative. */
  audioLengthShare: 0.01,
  /** Displayed aspect ratio, relative. */
  aspectShare: 0.01,
} as const;

/** What a player shows of one file: its streams' facts, every video frame's time, the audio's start and length. */
export interface Shown {
  /** Presentation times of the video frames, seconds from the file's earliest stream start. */
  frameTimes: number[];
  /** Time of the first decoded audio sample, same origin (decoder priming as the decoder skips it); undefined without audio. */
  audioStart?: number;
  /** The decoded audio, mono at 48 kHz, from `audioStart`. */
  samples?: Float32Array;
  /** Decoded audio length, seconds. */
  audioSeconds?: number;
  /** Displayed picture size after pixel aspect and rotation, and the rotation in degrees (0, 90, 180, 270). */
  display?: { width: number; height: number; rotation: number };
}

export interface Judgement {
  source: Shown;
  export: Shown;
  /** Per-frame PSNR (dB, inf capped at 99), frames paired by index. */
  psnr: number[];
  psnrMean: number;
  /** Largest |export - source| frame time, seconds, and the half frame it must stay within. */
  worstPts: number;
  halfFrame: number;
  /** Video start minus audio start, seconds, in each file. */
  avOffset?: { source: number; export: number };
  /** Every criterion failed, in words; empty when the export passes. */
  failures: string[];
}

const num = (x: unknown) => Number(x);

function rotationOf(stream: { side_data_list?: { rotation?: number }[]; tags?: { rotate?: string } }): number {
  const r = stream.side_data_list?.find((d) => d.rotation !== undefined)?.rotation ?? num(stream.tags?.rotate ?? 0);
  return (((Math.round(-r / 90) * 90) % 360) + 360) % 360;
}

/** What a player shows of `file` (see Shown). */
export async function shown(file: string): Promise<Shown> {
  const info = await ffprobeJson(file, ['-show_streams', '-show_format']);
  const origin = Number.isFinite(num(info.format.start_time)) ? num(info.format.start_time) : 0;
  const v = info.streams.find((s: { codec_type: string }) => s.codec_type === 'video');
  const a = info.streams.find((s: { codec_type: string }) => s.codec_type === 'audio');
  const out: Shown = { frameTimes: [] };
  if (v) {
    const j = await ffprobeJson(file, ['-select_streams', 'v:0', '-show_entries', 'frame=best_effort_timestamp_time']);
    out.frameTimes = (j.frames as { best_effort_timestamp_time: string }[]).map((f) => num(f.best_effort_timestamp_time) - origin);
    const [sn, sd] = String(v.sample_aspect_ratio ?? '1:1')
      .split(':')
      .map(Number);
    const sar = sn && sd ? sn / sd : 1;
    const rotation = rotationOf(v);
    const w = Math.round(v.width * sar);
    out.display = rotation % 180 ? { width: v.height, height: w, rotation } : { width: w, height: v.height, rotation };
  }
  if (a) {
    const j = await ffprobeJson(file, ['-select_streams', 'a:0', '-read_intervals', '%+#64', '-show_entries', 'frame=best_effort_timestamp_time']);
    out.samples = await pcm(file);
    out.audioStart = num(j.frames[0]?.best_effort_timestamp_time) - origin;
    out.audioSeconds = out.samples.length / 48000;
  }
  return out;
}

/**
 * Per-frame PSNR of `exported` against `source`, both decoded as a player shows them (ffmpeg rotates by the display
 * matrix), scaled to the export's displayed size with square pixels, frames paired by index.
 */
export async function framePsnr(exported: string, source: string, width: number, height: number): Promise<number[]> {
  const stats = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'judge-')), 'psnr.log');
  const even = (n: number) => Math.max(2, 2 * Math.round(n / 2));
  const size = `${even(width)}:${even(height)}`;
  const graph = `[0:v]scale=${size}:flags=bicubic,setsar=1,settb=1/30,setpts=N[x];[1:v]scale=${size}:flags=bicubic,setsar=1,settb=1/30,setpts=N[y];[x][y]psnr=stats_file=${stats}`;
  try {
    await run('ffmpeg', ['-v', 'error', '-i', exported, '-i', source, '-lavfi', graph, '-f', 'null', '-'], { maxBuffer: 16 * 2 ** 20 });
    return fs
      .readFileSync(stats, 'utf8')
      .split('\n')
      .filter((l) => l.includes('psnr_avg:'))
      .map((l) => {
        const m = /psnr_avg:(\S+)/.exec(l)![1]!;
        return m === 'inf' ? 99 : Math.min(99, Number(m));
      });
  } finally {
    fs.rmSync(path.dirname(stats), { recursive: true, force: true });
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : Number.NaN;
};

/** Frames whose PSNR is more than LIMITS.psnrDropDb below the median of their neighbours, as [index, dB, median]. */
export function psnrDrops(psnr: number[]): [number, number, number][] {
  const k = LIMITS.psnrNeighbours;
  const out: [number, number, number][] = [];
  for (let i = 0; i < psnr.length; i++) {
    const around = [...psnr.slice(Math.max(0, i - k), i), ...psnr.slice(i + 1, i + 1 + k)];
    if (!around.length) continue;
    const m = median(around);
    if (psnr[i]! < m - LIMITS.psnrDropDb) out.push([i, psnr[i]!, m]);
  }
  return out;
}

/** Cross-correlation window (s) and the largest shift searched (s). */
const XCORR_WINDOW = 0.5;
const XCORR_RANGE = 0.08;

/**
 * How much later (s) the export plays the source's sound than the source does: the lag that best correlates a
 * window from the middle of the source's audio with the export's. The fixtures' sound is noise, so the peak is
 * unique; NaN when either has too little audio.
 */
export function soundShift(src: Shown, out: Shown): number {
  const [s, e] = [src.samples!, out.samples!];
  const rate = 48000;
  const w = Math.min(Math.round(XCORR_WINDOW * rate), Math.floor(s.length / 2));
  const from = Math.floor((s.length - w) / 2);
  // Export sample index of source sample `from` if nothing moved.
  const base = Math.round((src.audioStart! - out.audioStart!) * rate) + from;
  const range = Math.round(XCORR_RANGE * rate);
  let best = Number.NaN;
  let bestScore = -Infinity;
  for (let k = -range; k <= range; k++) {
    const o = base + k;
    if (o < 0 || o + w > e.length) continue;
    let dot = 0;
    let ee = 0;
    for (let i = 0; i < w; i++) {
      dot += s[from + i]! * e[o + i]!;
      ee += e[o + i]! * e[o + i]!;
    }
    const score = ee > 0 ? dot / Math.sqrt(ee) : -Infinity;
    if (score > bestScore) [bestScore, best] = [score, k];
  }
  // Export time of the matched sample minus source time of `from`.
  return out.audioStart! + (base + best) / rate - (src.audioStart! + from / rate);
}

/** Judges `exported` against `source` by every criterion of LIMITS. */
export async function judge(source: string, exported: string): Promise<Judgement> {
  const [src, out] = [await shown(source), await shown(exported)];
  const failures: string[] = [];
  const f = (ok: boolean, msg: string) => ok || failures.push(msg);
  const intervals = src.frameTimes.slice(1).map((t, i) => t - src.frameTimes[i]!);
  const halfFrame = LIMITS.ptsShareOfFrame * (median(intervals) || 1 / 30);
  let worstPts = 0;
  let worstAt = -1;
  for (let i = 0; i < Math.min(src.frameTimes.length, out.frameTimes.length); i++) {
    const d = Math.abs(out.frameTimes[i]! - src.frameTimes[i]!);
    if (d > worstPts) [worstPts, worstAt] = [d, i];
  }
  let psnr: number[] = [];
  f(Boolean(src.display) === Boolean(out.display), `video: source ${src.display ? 'has' : 'has no'} video, export ${out.display ? 'has' : 'has no'}`);
  if (src.display && out.display) {
    const n = [src.frameTimes.length, out.frameTimes.length];
    f(Math.abs(n[1]! - n[0]!) <= LIMITS.frameCount, `frame count: export ${n[1]}, source ${n[0]} (±${LIMITS.frameCount})`);
    f(
      worstPts <= halfFrame + 1e-6,
      `frame ${worstAt} shown ${(worstPts * 1000).toFixed(1)} ms from its source time (limit ${(halfFrame * 1000).toFixed(1)} ms)`,
    );
    const [sa, oa] = [src.display.width / src.display.height, out.display.width / out.display.height];
    f(
      Math.abs(oa / sa - 1) <= LIMITS.aspectShare,
      `displayed aspect: export ${out.display.width}x${out.display.height}, source ${src.display.width}x${src.display.height}`,
    );
    f(sa > 1 === oa > 1, `orientation: export ${oa > 1 ? 'landscape' : 'portrait'}, source ${sa > 1 ? 'landscape' : 'portrait'}`);
    psnr = await framePsnr(exported, source, out.display.width, out.display.height);
    for (const [i, db, m] of psnrDrops(psnr).slice(0, 3)) failures.push(`frame ${i}: PSNR ${db.toFixed(1)} dB, neighbours' median ${m.toFixed(1)} dB`);
  }
  const psnrMean = psnr.length ? psnr.reduce((a, b) => a + b, 0) / psnr.length : Number.NaN;
  if (psnr.length) f(psnrMean >= LIMITS.psnrMeanDb, `mean PSNR ${psnrMean.toFixed(1)} dB below ${LIMITS.psnrMeanDb} dB`);
  f(
    (src.audioSeconds === undefined) === (out.audioSeconds === undefined),
    `audio: source ${src.audioSeconds === undefined ? 'has none' : 'has it'}, export ${out.audioSeconds === undefined ? 'has none' : 'has it'}`,
  );
  let avOffset: Judgement['avOffset'];
  if (src.audioSeconds !== undefined && out.audioSeconds !== undefined) {
    f(
      Math.abs(out.audioSeconds / src.audioSeconds - 1) <= LIMITS.audioLengthShare,
      `audio length: export ${out.audioSeconds.toFixed(4)} s, source ${src.audioSeconds.toFixed(4)} s`,
    );
    if (src.frameTimes.length && out.frameTimes.length) {
      // Where the source's sound is in the export, by cross-correlation, beside where its first frame is.
      const audioShift = soundShift(src, out);
      const videoShift = out.frameTimes[0]! - src.frameTimes[0]!;
      avOffset = { source: src.frameTimes[0]! - src.audioStart!, export: src.frameTimes[0]! - src.audioStart! + videoShift - audioShift };
      f(
        Math.abs(avOffset.export - avOffset.source) <= LIMITS.avOffsetSeconds,
        `A/V offset: export ${(avOffset.export * 1000).toFixed(1)} ms, source ${(avOffset.source * 1000).toFixed(1)} ms`,
      );
    }
  }
  return { source: src, export: out, psnr, psnrMean, worstPts, halfFrame, ...(avOffset && { avOffset }), failures };
}
