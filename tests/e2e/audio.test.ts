/**
 * Audio end to end, judged by ear: what the watch page's <video> element
 * actually plays is recorded sample by sample and analysed for silences and
 * clicks. `SourceBuffer.buffered` cannot be trusted for this: it reports no gap
 * while per-shard AAC plays 38 silences and 63 clicks in 10 s (DESIGN.md).
 *
 * The recording taps the element through Web Audio: before the page's scripts
 * run, `HTMLMediaElement.prototype.play` is wrapped so that the first play of a
 * <video> routes the element into an AudioWorklet that copies every render
 * quantum to the main thread. Once the element is routed into Web Audio, the
 * graph's render clock is what pulls the element's audio, so the recording is
 * the played sound itself: a stall, a missing packet or a bad splice shows up in
 * it exactly as a listener would hear it.
 *
 * The fixture's audio is a continuous 440 Hz sine, so "seamless" is precise:
 * no run of near-zero samples, and every sample predicted by the previous two
 * (a sine obeys x[n] = 2cos(w)x[n-1] - x[n-2]).
 */
import fs from 'node:fs';
import type { Browser, Page } from 'playwright';
import { describe, expect, it } from 'vitest';
import { AAC_PACKET_SAMPLES, AUDIO_RENDITION_ID, type ShardMap } from '../../src/shared/shardMap.ts';
import { newPage, type TrackedPage } from '../harness/browser.ts';
import { e2eSession } from '../harness/e2eSession.ts';
import { ffprobeJson, fixture } from '../harness/fixtures.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { analyse, TONE_HZ, type Analysis, type Glitch } from '../harness/tone.ts';

// ---------------------------------------------------------------- analysis

/** Phase (radians) of the tone over samples [from, to), by least squares against sin and cos. */
function phaseOf(x: Float32Array, sampleRate: number, from: number, to: number, frequency = TONE_HZ): number {
  const w = (2 * Math.PI * frequency) / sampleRate;
  // Normal equations of x[n] ≈ a·sin(wn) + b·cos(wn).
  let ss = 0;
  let cc = 0;
  let sc = 0;
  let xs = 0;
  let xc = 0;
  for (let n = from; n < to; n++) {
    const sn = Math.sin(w * n);
    const cn = Math.cos(w * n);
    ss += sn * sn;
    cc += cn * cn;
    sc += sn * cn;
    xs += x[n]! * sn;
    xc += x[n]! * cn;
  }
  const det = ss * cc - sc * sc;
  return Math.atan2((xc * ss - xs * sc) / det, (xs * cc - xc * sc) / det);
}

/**
 * What happens at one place in a recording, for the report: the largest
 * prediction residual within 5 ms (as a share of the amplitude) and how far the
 * tone after it is shifted in time against the tone before it (µs; a continuous
 * tone gives 0, a splice that drops or repeats d seconds gives ±d).
 */
function spliceAt(x: Float32Array, a: Analysis, t: number): { t: number; residual: number; shiftUs: number } {
  const sr = a.sampleRate;
  const n0 = Math.round((a.soundStart + t) * sr);
  const c = 2 * Math.cos((2 * Math.PI * TONE_HZ) / sr);
  let residual = 0;
  for (let n = n0 - Math.round(0.005 * sr); n <= n0 + Math.round(0.005 * sr); n++) residual = Math.max(residual, Math.abs(x[n]! - c * x[n - 1]! + x[n - 2]!));
  const win = Math.round(0.02 * sr);
  const gapAround = Math.round(0.006 * sr);
  let d = phaseOf(x, sr, n0 + gapAround, n0 + gapAround + win) - phaseOf(x, sr, n0 - gapAround - win, n0 - gapAround);
  d = Math.atan2(Math.sin(d), Math.cos(d));
  return { t, residual: residual / a.amplitude, shiftUs: (-d / (2 * Math.PI * TONE_HZ)) * 1e6 };
}

// ---------------------------------------------------------------- the detector, checked on synthetic signals

/** `secs` of a 440 Hz sine like the fixture's, with a little noise so that exact zeros never happen by chance. */
function sine(secs: number, sampleRate: number, phaseAt: (n: number) => number = (n) => n): Float32Array {
  const x = new Float32Array(Math.round(secs * sampleRate));
  let seed = 1;
  const noise = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 2e-5;
  for (let n = 0; n < x.length; n++) x[n] = 0.088 * Math.sin((2 * Math.PI * TONE_HZ * phaseAt(n)) / sampleRate) + noise();
  return x;
}

describe('audio analyser', () => {
  it('finds nothing in a clean sine, at 48 kHz and at 44.1 kHz, and measures its length', () => {
    for (const sr of [48000, 44100]) {
      const padded = new Float32Array(sr * 11);
      padded.set(sine(10, sr), sr / 2); // half a second of silence on each side, as a recording has
      const a = analyse(padded, sr);
      expect(a.silences).toEqual([]);
      expect(a.clicks).toEqual([]);
      expect(a.length).toBeCloseTo(10, 3);
      expect(a.soundStart).toBeCloseTo(0.5, 3);
      expect(a.cleanResidual).toBeLessThan(0.002);
    }
  });

  it('finds a 10 ms gap and a one-packet (1024-sample) gap as silences, with a click at each edge', () => {
    const sr = 48000;
    for (const gap of [480, 1024]) {
      const x = sine(10, sr);
      const from = Math.round(3.3 * sr) + 17; // not at a zero crossing: a real dropout lands anywhere
      x.fill(0, from, from + gap);
      const a = analyse(x, sr);
      expect(a.silences).toHaveLength(1);
      expect(a.silences[0]!.at).toBeCloseTo(from / sr, 3);
      expect(a.silences[0]!.ms).toBeCloseTo((gap / sr) * 1000, 0);
      expect(a.clicks.map((c) => c.at.toFixed(2))).toEqual([(from / sr).toFixed(2), ((from + gap) / sr).toFixed(2)]);
    }
  });

  it('finds a phase jump (one AAC packet skipped or repeated) and a one-sample slip at a zero crossing as clicks, with no silence', () => {
    const sr = 48000;
    const jump = Math.round(5 * sr);
    const skipped = analyse(
      sine(10, sr, (n) => (n < jump ? n : n + 1024)),
      sr,
    );
    expect(skipped.silences).toEqual([]);
    expect(skipped.clicks).toHaveLength(1);
    expect(skipped.clicks[0]!.at).toBeCloseTo(5, 3);
    // The smallest timing error a splice can make, one sample, where the tone is steepest.
    const zero = 5 * sr; // 2200 whole periods: a zero crossing
    const slipped = analyse(
      sine(10, sr, (n) => (n < zero ? n : n + 1)),
      sr,
    );
    expect(slipped.silences).toEqual([]);
    expect(slipped.clicks).toHaveLength(1);
  });

  it('finds a splice between two versions of the tone whose amplitudes differ by 3% (two encodes that disagree), not by 0.3%', () => {
    const sr = 48000;
    const cut = Math.round(6 * sr) + 27; // near a peak, where an amplitude step is largest
    const splice = (ratio: number) => {
      const x = sine(10, sr);
      for (let n = cut; n < x.length; n++) x[n] = x[n]! * ratio;
      return analyse(x, sr);
    };
    expect(splice(0.97).clicks.map((c) => c.at.toFixed(3))).toEqual([(cut / sr).toFixed(3)]);
    expect(splice(0.997).clicks).toEqual([]);
  });
});

// ---------------------------------------------------------------- recording in the page

/**
 * The AudioWorklet: collects every render quantum of its input and posts it in
 * batches (a message per 128 frames would be 375 a second). It checks that the
 * graph's frame numbers follow on from call to call, so that a gap in the
 * recording can only be a gap in what was played. It passes the sound on, so
 * the element plays as it would without the tap.
 */
const TAP_PROCESSOR = `
const BATCH = 16384;
class ShardcastTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.next = -1;
    this.calls = 0;
    this.fresh();
    this.port.onmessage = () => this.post(true);
  }
  fresh() {
    this.bufs = [new Float32Array(BATCH), new Float32Array(BATCH)];
    this.n = 0;
    this.gaps = [];
  }
  post(flush) {
    const ch = this.bufs.map((b) => b.slice(0, this.n));
    this.port.postMessage({ ch, gaps: this.gaps, flush }, ch.map((c) => c.buffer));
    this.fresh();
  }
  process(inputs, outputs) {
    const input = inputs[0] || [];
    const out = outputs[0];
    const frames = out[0].length;
    this.calls++;
    // Chromium's currentFrame in a node's first call is earlier than where the graph really is (measured: 896, then 2432);
    // that call is before the element plays (play() waits for this tap), so continuity is checked from the second call on.
    if (this.calls > 2 && currentFrame !== this.next) this.gaps.push([this.calls, this.next, currentFrame]);
    this.next = currentFrame + frames;
    if (this.n + frames > BATCH) this.post(false);
    for (let c = 0; c < 2; c++) {
      // A mono input is the same sound on both channels; no input at all is silence (the buffers are zeroed).
      const src = input[c] || input[0];
      if (src) {
        this.bufs[c].set(src, this.n);
        out[c].set(src);
      }
    }
    this.n += frames;
    return true;
  }
}
registerProcessor('shardcast-tap', ShardcastTap);
`;

interface TapChunk {
  /** Render calls whose frame number did not follow on: [call, expected frame, actual frame]. */
  gaps: number[][];
  ch: Float32Array[];
  flush: boolean;
}

interface TapState {
  sampleRate: number;
  chunks: TapChunk[];
  errors: string[];
  flush?: () => Promise<void>;
}

/** Runs in the page before its own scripts: wraps play() so the first <video> played is routed through the tap. */
function installTap(processor: string): void {
  const tap: TapState = { sampleRate: 0, chunks: [], errors: [] };
  (window as unknown as { __audioTap: TapState }).__audioTap = tap;
  const play = HTMLMediaElement.prototype.play;
  let ready: Promise<void> | undefined;
  HTMLMediaElement.prototype.play = function (this: HTMLMediaElement): Promise<void> {
    if (!(this instanceof HTMLVideoElement)) return play.call(this);
    const el = this;
    ready ??= (async () => {
      const ctx = new AudioContext();
      tap.sampleRate = ctx.sampleRate;
      await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([processor], { type: 'text/javascript' })));
      const node = new AudioWorkletNode(ctx, 'shardcast-tap', {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [2],
        channelCount: 2,
        channelCountMode: 'explicit',
      });
      let flushed: (() => void) | undefined;
      node.port.onmessage = (e: MessageEvent<TapChunk>) => {
        tap.chunks.push(e.data);
        if (e.data.flush) flushed?.();
      };
      tap.flush = () =>
        new Promise<void>((resolve) => {
          flushed = resolve;
          node.port.postMessage('flush');
        });
      ctx.createMediaElementSource(el).connect(node).connect(ctx.destination);
      // Autoplay is allowed by the test browser's flags; resume() covers a context created suspended anyway.
      if (ctx.state !== 'running') await ctx.resume();
    })().catch((e: unknown) => {
      tap.errors.push(String(e));
    });
    // Playback starts only once the tap is in place, so the recording misses nothing.
    return ready.then(() => play.call(el));
  };
}

interface Recording {
  sampleRate: number;
  channels: Float32Array[];
  /** Frames the graph skipped while recording (render calls that did not follow on): must be 0. */
  lostFrames: number;
  /** Where they were: call/expected frame/actual frame. */
  breaks: string[];
  errors: string[];
}

/** Everything recorded so far, per channel, at the context's sample rate. */
async function takeRecording(page: Page): Promise<Recording> {
  const r = await page.evaluate(async () => {
    const tap = (window as unknown as { __audioTap: TapState }).__audioTap;
    await tap.flush?.();
    const chunks = tap.chunks;
    const breaks = chunks.flatMap((c) => c.gaps.map((g) => g.join('/')));
    const lostFrames = chunks.reduce((n, c) => n + c.gaps.reduce((m, g) => m + Math.abs(g[2]! - g[1]!), 0), 0);
    const total = chunks.reduce((n, c) => n + c.ch[0]!.length, 0);
    // Base64 crosses the page boundary far faster than an array of half a million numbers.
    const channels = [0, 1].map((c) => {
      const all = new Float32Array(total);
      let at = 0;
      for (const k of chunks) {
        all.set(k.ch[c]!, at);
        at += k.ch[c]!.length;
      }
      const bytes = new Uint8Array(all.buffer);
      let s = '';
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return btoa(s);
    });
    return { sampleRate: tap.sampleRate, channels, lostFrames, breaks, errors: tap.errors };
  });
  return {
    ...r,
    channels: r.channels.map((b64) => {
      const buf = Buffer.from(b64, 'base64');
      // A copy: the Buffer's memory is not necessarily 4-byte aligned.
      return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    }),
  };
}

// ---------------------------------------------------------------- end to end

let browser: Browser;
let server: TestServer | undefined;
const pages: TrackedPage[] = [];

e2eSession({ onBrowser: (b) => (browser = b), pages, server: () => server, clearServer: () => (server = undefined) });

async function open(path: string): Promise<TrackedPage> {
  const t = await newPage(browser);
  pages.push(t);
  await t.page.goto(`${server!.url}${path}`);
  return t;
}

async function encodeAll(id: string, tabs: number): Promise<ShardMap> {
  const encoders: TrackedPage[] = [];
  for (let i = 0; i < tabs; i++) encoders.push(await open('/encode?persist=0'));
  const end = Date.now() + 120_000;
  for (;;) {
    const c = (await (await fetch(`${server!.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end) {
      const failed = server!.pool.recentEvents.filter((e) => /fail|reject/.test(e.type)).slice(-5);
      throw new Error(
        `encoding did not finish: ${JSON.stringify(failed)}; encoder tab problems: ${encoders
          .flatMap((e) => e.problems)
          .slice(0, 5)
          .join(' | ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The source's audio duration, by the referee (ffprobe), seconds. */
async function sourceAudioSeconds(file: string): Promise<number> {
  const j = await ffprobeJson(file, ['-select_streams', 'a:0', '-show_entries', 'stream=duration']);
  return Number(j.streams[0].duration);
}

/** Where separately encoded audio runs meet: starts of shards whose file carries more than the priming packet before them. */
function runJoins(map: ShardMap): number[] {
  return map.shards
    .map((s) => s.renditions[AUDIO_RENDITION_ID])
    .filter((st) => st !== undefined && (st.lead ?? 0) > AAC_PACKET_SAMPLES && st.start !== undefined)
    .map((st) => st!.start!);
}

interface Heard {
  analyses: Analysis[];
  recording: Recording;
  viewer: { state: string; error: string | undefined; stalls: number; skipped: number };
}

/** Opens the watch page with the tap installed, lets it play to the end, and analyses both channels. */
async function listen(contentId: string): Promise<Heard> {
  const t = await newPage(browser);
  pages.push(t);
  await t.page.addInitScript(installTap, TAP_PROCESSOR);
  await t.page.goto(`${server!.url}/watch/${contentId}`);
  await t.page.waitForSelector('[data-state="ended"], [data-state="error"]', { timeout: 90_000 });
  // 'ended' fires when the clock reaches the end; give the graph a few quanta to render the last of the sound.
  await new Promise((r) => setTimeout(r, 300));
  const recording = await takeRecording(t.page);
  const viewer = await t.page.evaluate(() => {
    const w = (window as unknown as { shardcastViewer: { state: string; error: string | undefined; stats: { stalls: number; skipped: number } } })
      .shardcastViewer;
    return { state: w.state, error: w.error, stalls: w.stats.stalls, skipped: w.stats.skipped };
  });
  expect(viewer.error, `viewer error; page problems: ${t.problems.join(' | ')}`).toBeUndefined();
  expect(recording.errors, 'the audio tap could not be installed').toEqual([]);
  return { analyses: recording.channels.map((ch) => analyse(ch, recording.sampleRate)), recording, viewer };
}

/** One line for the log and for every failure message: the counts, where each glitch is, and what each run join sounds like. */
function summary(h: Heard, sourceSeconds: number, joins: number[]): string {
  const fmt = (g: Glitch) => `${g.at.toFixed(4)}s${g.ms !== undefined ? ` ${g.ms.toFixed(1)}ms` : ''}${g.size !== undefined ? ` x${g.size.toFixed(4)}` : ''}`;
  return JSON.stringify({
    sampleRate: h.recording.sampleRate,
    lostFrames: h.recording.lostFrames,
    ...(h.recording.breaks.length > 0 && { breaks: h.recording.breaks }),
    viewer: h.viewer,
    sourceSeconds,
    joins: joins.map((j) => {
      const at = spliceAt(h.recording.channels[0]!, h.analyses[0]!, j);
      return `${j.toFixed(4)}s: residual x${at.residual.toFixed(4)}, shift ${at.shiftUs.toFixed(1)}us`;
    }),
    channels: h.analyses.map((a) => ({
      soundStart: Number(a.soundStart.toFixed(3)),
      length: Number(a.length.toFixed(4)),
      amplitude: Number(a.amplitude.toFixed(4)),
      cleanResidual: Number(a.cleanResidual.toFixed(5)),
      silences: a.silences.map(fmt),
      clicks: a.clicks.map(fmt),
    })),
  });
}

function expectSeamless(h: Heard, sourceSeconds: number, map: ShardMap, label: string): void {
  const line = summary(h, sourceSeconds, runJoins(map));
  console.log(`${label}: ${line}`);
  expect(h.recording.lostFrames, line).toBe(0);
  expect(h.viewer.state).toBe('ended');
  for (const a of h.analyses) {
    expect(a.silences, line).toEqual([]);
    expect(a.clicks, line).toEqual([]);
    expect(Math.abs(a.length - sourceSeconds) / sourceSeconds, line).toBeLessThan(0.01);
  }
}

describe('viewer audio, as played', () => {
  it('plays one AAC run cut into shards with no silence and no click, for the whole length of the source', async () => {
    server = await startTestServer({});
    const file = await fixture('av-2997');
    const { json } = await upload(server.url, fs.readFileSync(file));
    const map = await encodeAll(json.id, 2);
    expect(runJoins(map)).toEqual([]); // one run: 10 s is at most 2 x audioJobSeconds (30 s)
    expectSeamless(await listen(json.id), await sourceAudioSeconds(file), map, 'one run');
  });

  it('plays audio from ~3 s runs encoded separately, trimmed where they meet, with no silence and no click', async () => {
    server = await startTestServer({ audioJobSeconds: 3 });
    const file = await fixture('av-2997');
    const { json } = await upload(server.url, fs.readFileSync(file));
    const map = await encodeAll(json.id, 2);
    expect(runJoins(map).length).toBeGreaterThanOrEqual(2);
    expectSeamless(await listen(json.id), await sourceAudioSeconds(file), map, 'runs of 3 s');
  });
});
