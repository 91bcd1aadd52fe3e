/**
 * Bench results on disk: results.json (read, also in its old flat format, and
 * merged so benches not re-run keep their rows), RESULTS.md (the tables and
 * HOW_MEASURED, how each ratio is measured) and the software line.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCHES } from './benches.ts';
import { quantile } from './common.ts';
const OUT_DIR = import.meta.dirname;

export function software(): string {
  const chromium = (() => {
    try {
      return execFileSync(process.env.SHARDCAST_CHROMIUM || 'chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return 'unknown';
    }
  })();
  const pkg = (name: string) =>
    JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '../../node_modules', name, 'package.json'), 'utf8')).version as string;
  return `${chromium}; Node ${process.version}; @ffmpeg/core ${pkg('@ffmpeg/core')}; @roamhq/wrtc ${pkg('@roamhq/wrtc')} (Node peers); mediabunny ${pkg('mediabunny')}`;
}

/** One row as results.json keeps it: a value and a note per run (null: no sample / no note). */
export interface Row {
  metric: string;
  unit: string;
  values: (number | null)[];
  notes: (string | null)[];
}

/** One bench's last run as results.json keeps it; benches not re-run keep theirs. */
export interface BenchResult {
  id: string;
  title: string;
  /** When it ran (ISO), how many runs, how long they took. */
  at: string;
  runs: number;
  seconds: number;
  /** Browser and library versions it ran with. */
  software: string;
  rows: Row[];
}

export interface ResultsFile {
  updated: string;
  /** Which benches the last `npm run bench` ran (all of them unless --only). */
  lastRun: string[];
  benches: BenchResult[];
}

/** results.json as the previous run left it; the old flat format (one date for every row) is read too. */
export function readPrevious(file: string): BenchResult[] {
  let j: any;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return [];
  }
  if (Array.isArray(j?.benches)) return j.benches as BenchResult[];
  if (!Array.isArray(j?.results)) return [];
  const out: BenchResult[] = [];
  for (const r of j.results as { bench: string; metric: string; unit: string; values: number[]; notes: string[] }[]) {
    const id = Object.entries(BENCHES).find(([, b]) => b.title === r.bench)?.[0] ?? r.bench;
    let b = out.find((x) => x.id === id);
    if (!b) out.push((b = { id, title: r.bench, at: j.at, runs: 0, seconds: 0, software: 'not recorded', rows: [] }));
    b.runs = Math.max(b.runs, r.values.length);
    // The old format kept notes only where given, not per run: its first note stands for every run.
    b.rows.push({
      metric: r.metric,
      unit: r.unit,
      values: r.values.map((v) => (Number.isFinite(v) ? v : null)),
      notes: r.values.map(() => r.notes[0] ?? null),
    });
  }
  return out;
}

export const fmt = (n: number) => (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2));

/** Median, min-max and the note of the run whose value is the median (the nearer one of the two middles for an even count). */
export function summarise(r: Row): { median: string; range: string; runs: string; note: string } {
  const xs = r.values.filter((v): v is number => v !== null);
  if (xs.length === 0) return { median: 'no samples', range: '–', runs: `0 of ${r.values.length}`, note: r.notes.find((n) => n) ?? '' };
  const med = quantile(xs, 0.5);
  let at = -1;
  r.values.forEach((v, i) => {
    if (v !== null && (at < 0 || Math.abs(v - med) < Math.abs(r.values[at]! - med))) at = i;
  });
  const runs = xs.length === r.values.length ? String(xs.length) : `${xs.length} of ${r.values.length}`;
  return { median: fmt(med), range: `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}`, runs, note: r.notes[at] ?? '' };
}

/**
 * How each ratio (and each figure that is easy to misread) is measured, for
 * RESULTS.md: kept here, beside the code that measures it.
 */
export const HOW_MEASURED = [
  '- **tab / native** (a): the same x264 command (veryfast, high, no B-frames, 300 frames of the bench clip to a null output) in an ffmpeg.wasm tab and in native ffmpeg with `-threads 2` (and `-threads 1`); exec time in the tab against process wall time natively.',
  '- **multi-thread / single-thread core** (a): the same command in two tabs of one browser, one at a time, the multi-thread core with `-threads 2`.',
  '- **bytes, key frames / 2 s GOP** (d): shard-like key frame spacing encoded in the tab, against a native 2 s GOP curve at CRF 19-27 (one thread: the same bytes as the tab, checked in a row), at equal CRF and interpolated at equal PSNR.',
  "- **sharding overhead: pool / one exec** (b): one tab; pool side from its first job starting (the source uploaded and probed before) to every shard accepted, mean of two encodes; one-exec side: the pool's own job command (src/encoder/ffmpegArgs.ts: same x264 settings, a key frame and a segment every shard) once over the whole clip, the bytes already in the tab, exec time. The pool side's parts (source fetch, encode, hash/store/upload/check, waits between jobs) are rows of their own.",
  '- **speed-up, 2 tabs / 1 tab** (c): one server, one browser; 1 tab, 2 tabs, 1 tab in turn on fresh contents of the same clip (each deleted after); the mean of the two 1-tab times over the 2-tab time, within the run. Times as in b.',
  '- **shard protocol / raw data channel** (e): 16 MiB over our protocol (hash checked) and over a bare RTCDataChannel between the same two pages, warm, alternating, median of 3 each.',
  "- **2 WebCodecs tabs / native** (h): pool side as in b (first job to every shard accepted: slice fetch, decode, encode, mux, hash, upload, check); native side: libx264 veryfast `-threads 2`, one 20 s GOP, from the source file to the MP4 written, at the CRF whose PSNR is within 0.15 dB of the tabs' (searched, then timed once more); PSNR and bytes of both are rows. 1-tab rows time both engines the same way.",
  "- **re-queue delay** (g): from an encoder leaving (closing or going silent) with a job running or queued to each of its unfinished shards appearing in another encoder's job; the note says how many departures had work. Uploads keep arriving during the run so departures land on running jobs.",
  "- **busiest holder / mean holder** (g): for the most requested content, over the encoders that held some shard of it for at least 5 s of the viewing phase: viewer requests for that content served per second held; busiest over mean. Simulated viewers try holders as the watch page does (the server's list, least busy first, shuffled by a random comparator, then peers already connected first, at most 8 connections).",
];

/** Merges `fresh` with the previous results.json, prints RESULTS.md and writes it and results.json beside this file. `only`: the --only list, for the RESULTS.md header. */
export function writeResults(fresh: BenchResult[], only: string[] | undefined): void {
  // Merge: benches not run now keep their previous rows, date and run count.
  const previous = readPrevious(path.join(OUT_DIR, 'results.json'));
  const order = Object.keys(BENCHES);
  const merged = [...fresh, ...previous.filter((p) => !fresh.some((f) => f.id === p.id))].sort(
    (a, b) => (order.indexOf(a.id) + 1 || 99) - (order.indexOf(b.id) + 1 || 99),
  );
  const file: ResultsFile = { updated: new Date().toISOString(), lastRun: fresh.map((f) => f.id), benches: merged };
  const lines = [
    '# shardcast benchmark results',
    '',
    'Made by `npm run bench` (tests/bench/suite.ts). Figures are medians with min–max over the runs; ratios are taken within one run. The notes column shows the note of the run whose value is the median. "no samples": the run had nothing to measure for that row.',
    '',
    `- CPU: ${os.cpus()[0]?.model ?? 'unknown'} × ${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `- Last written ${file.updated}; that run re-ran: ${fresh.map((f) => f.title).join(', ') || 'nothing'}${only ? ` (--only ${only.join(',')}; the other benches keep the figures of their own last run)` : ''}.`,
    '',
    '| bench | ran at | runs | took | software |',
    '|---|---|---|---|---|',
    ...merged.map((b) => `| ${b.title} | ${b.at} | ${b.runs} | ${b.seconds ? `${b.seconds} s` : '–'} | ${b.software} |`),
    '',
    '| bench | measurement | median | min–max | runs | unit | notes |',
    '|---|---|---|---|---|---|---|',
    ...merged.flatMap((b) =>
      b.rows.map((r) => {
        const x = summarise(r);
        return `| ${b.title} | ${r.metric} | ${x.median} | ${x.range} | ${x.runs} | ${r.unit} | ${x.note} |`;
      }),
    ),
    '',
    '## How each ratio is measured',
    '',
    ...HOW_MEASURED,
    '',
  ];
  const md = lines.join('\n');
  console.log(`\n${md}`);
  fs.writeFileSync(path.join(OUT_DIR, 'RESULTS.md'), md);
  fs.writeFileSync(path.join(OUT_DIR, 'results.json'), `${JSON.stringify(file, null, 2)}\n`);
}
