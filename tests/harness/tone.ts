/**
 * Judging a recording of a pure tone by ear: silences (dropouts) and clicks
 * (samples a sine would not predict). The audio fixtures carry a continuous
 * 440 Hz sine, so "seamless" is precise: no run of near-zero samples, and
 * every sample predicted by the previous two (x[n] = 2cos(w)x[n-1] - x[n-2]).
 * Used on what a browser played (tests/e2e/audio.test.ts) and on native
 * ffmpeg's decode of the product's output.
 */

/** The tone every audio fixture carries (lavfi sine=frequency=440). */
export const TONE_HZ = 440;

export interface AnalyseOptions {
  /** Frequency of the pure tone the signal should be, Hz. */
  frequency: number;
  /** |sample| below this counts as silent. A 440 Hz sine of amplitude ~0.09 stays below 1e-3 for under one sample at each zero crossing. */
  silenceLevel: number;
  /** A silent run longer than this is a silence (a dropout), ms. */
  minSilenceMs: number;
  /** Clicks this close to the first or last sound are not counted: playback starts and stops abruptly by design, ms. */
  edgeMs: number;
  /**
   * A prediction residual above this share of the tone's amplitude is a click.
   * Clean AAC at 128 kb/s leaves at most 0.16% (native ffmpeg's decode of the
   * fixture) or 0.23% (as Chromium plays it, resampled to 44.1 kHz); a one-sample
   * slip at a zero crossing leaves 5.8% (w = 2π·440/48000), a packet lost or
   * repeated far more. 1% is four times the clean level.
   */
  clickRatio: number;
  /** Flagged samples closer than this belong to one click, ms. */
  mergeMs: number;
}

export const DEFAULT_ANALYSE: AnalyseOptions = { frequency: TONE_HZ, silenceLevel: 1e-3, minSilenceMs: 5, edgeMs: 20, clickRatio: 0.01, mergeMs: 2 };

export interface Glitch {
  /** Seconds from the first sound. */
  at: number;
  /** Silences: length, ms. */
  ms?: number;
  /** Clicks: the largest residual, as a share of the amplitude. */
  size?: number;
}

export interface Analysis {
  sampleRate: number;
  /** Seconds into the recording where the sound starts (leading silence trimmed). */
  soundStart: number;
  /** Seconds from the first to the last sound. */
  length: number;
  /** Peak amplitude of the tone, estimated from its RMS. */
  amplitude: number;
  /** The largest residual outside clicks, as a share of the amplitude: how close the clean signal is to the threshold. */
  cleanResidual: number;
  silences: Glitch[];
  clicks: Glitch[];
}

/** Silences and clicks in one channel of a recording of a pure tone. The very start and end are exempt. */
export function analyse(x: Float32Array, sampleRate: number, options: Partial<AnalyseOptions> = {}): Analysis {
  const o = { ...DEFAULT_ANALYSE, ...options };
  let first = 0;
  while (first < x.length && Math.abs(x[first]!) < o.silenceLevel) first++;
  let last = x.length - 1;
  while (last > first && Math.abs(x[last]!) < o.silenceLevel) last--;
  const none: Analysis = { sampleRate, soundStart: 0, length: 0, amplitude: 0, cleanResidual: 0, silences: [], clicks: [] };
  if (first >= last) return none;
  const at = (n: number) => (n - first) / sampleRate;

  const silences: Glitch[] = [];
  const minRun = (o.minSilenceMs / 1000) * sampleRate;
  let runStart = -1;
  for (let n = first; n <= last + 1; n++) {
    const quiet = n <= last && Math.abs(x[n]!) < o.silenceLevel;
    if (quiet && runStart < 0) runStart = n;
    if (!quiet && runStart >= 0) {
      if (n - runStart > minRun) silences.push({ at: at(runStart), ms: ((n - runStart) / sampleRate) * 1000 });
      runStart = -1;
    }
  }

  let energy = 0;
  for (let n = first; n <= last; n++) energy += x[n]! * x[n]!;
  const amplitude = Math.sqrt((2 * energy) / (last - first + 1));
  const c = 2 * Math.cos((2 * Math.PI * o.frequency) / sampleRate);
  const threshold = o.clickRatio * amplitude;
  const edge = Math.ceil((o.edgeMs / 1000) * sampleRate);
  const merge = (o.mergeMs / 1000) * sampleRate;
  const clicks: Glitch[] = [];
  let lastFlag = -Infinity;
  let cleanResidual = 0;
  for (let n = Math.max(first + edge, 2); n <= last - edge; n++) {
    const r = Math.abs(x[n]! - c * x[n - 1]! + x[n - 2]!);
    if (r <= threshold) {
      cleanResidual = Math.max(cleanResidual, r);
      continue;
    }
    if (n - lastFlag > merge) clicks.push({ at: at(n), size: r / amplitude });
    else clicks[clicks.length - 1]!.size = Math.max(clicks[clicks.length - 1]!.size!, r / amplitude);
    lastFlag = n;
  }
  return {
    sampleRate,
    soundStart: first / sampleRate,
    length: (last - first + 1) / sampleRate,
    amplitude,
    cleanResidual: cleanResidual / amplitude,
    silences,
    clicks,
  };
}
