/**
 * `npm run bench`: measurements in real headless Chromium, side by side in one
 * run, repeated (--runs N, default 3) and reported as median and min/max.
 * Prints a markdown table and writes tests/bench/RESULTS.md and results.json.
 *
 * Run inside the private network namespace by tests/harness/run.ts --bench.
 * Pick benches with --only delivery,failover: their rows replace those benches'
 * rows in RESULTS.md and results.json, and every other bench keeps its last
 * figures with their own date and run count. Each bench is a function that
 * returns rows; add new ones to BENCHES, and say how a new ratio is measured
 * in HOW_MEASURED.
 */
import { BENCHES } from './benches.ts';
import { software, writeResults, type BenchResult, type Row } from './results.ts';

const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const RUNS = Number(opt('runs') ?? 3);
const ONLY = opt('only')?.split(',');

async function main(): Promise<void> {
  const fresh: BenchResult[] = [];
  for (const [id, b] of Object.entries(BENCHES)) {
    if (ONLY && !ONLY.includes(id)) continue;
    const rows: Row[] = [];
    const runs = Math.min(RUNS, b.maxRuns ?? RUNS);
    const t0 = Date.now();
    for (let run = 0; run < runs; run++) {
      const r0 = Date.now();
      const samples = await b.run(run);
      console.log(
        `${b.title} run ${run + 1}/${runs} (${((Date.now() - r0) / 1000).toFixed(0)} s): ${samples.map((s) => `${s.metric} ${s.value === null || !Number.isFinite(s.value) ? 'no sample' : s.value.toFixed(2)} ${s.unit}`).join('; ')}`,
      );
      for (const s of samples) {
        let r = rows.find((x) => x.metric === s.metric);
        // A row first seen in a later run had no sample in the earlier ones.
        if (!r) rows.push((r = { metric: s.metric, unit: s.unit, values: Array(run).fill(null), notes: Array(run).fill(null) }));
        r.values[run] = s.value !== null && Number.isFinite(s.value) ? s.value : null;
        r.notes[run] = s.note ?? null;
      }
    }
    for (const r of rows) while (r.values.length < runs) r.values.push(null), r.notes.push(null);
    fresh.push({ id, title: b.title, at: new Date(t0).toISOString(), runs, seconds: Math.round((Date.now() - t0) / 1000), software: software(), rows });
  }
  writeResults(fresh, ONLY);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
